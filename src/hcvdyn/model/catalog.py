"""The named models (``hcvdyn models`` lists them): each a declaration of :class:`HCVModel` with its source."""

from __future__ import annotations

from hcvdyn.model.hcv import HCVModel
from hcvdyn.model.kinetics import SRC_NEUMANN

__all__ = ["MODELS", "RBV_CEL", "get_model"]

RBV_CEL = ("ribavirin", "celgosivir")



MODELS: dict[str, HCVModel] = {
    m.name: m
    for m in (
        HCVModel(
            "neumann1998", (("peginterferon_alfa2b", "constant"),),
            description="target-cell-limited model; interferon blocks production (eps) and infection (eta)",
            reference=SRC_NEUMANN,
        ),
        HCVModel(
            "neumann1998_fixedT", (("peginterferon_alfa2b", "constant"),), constant_target_cells=True,
            description="Neumann et al.'s fitting model: target cells held at T0, closed-form biphasic decline",
            reference=SRC_NEUMANN,
        ),
        HCVModel(
            "dixit2004", (("peginterferon_alfa2b", "constant"), ("ribavirin", "constant")),
            description="adds ribavirin as a mutagen: a fraction rho of new virions is non-infectious",
            reference="Dixit et al. 2004, Nature 432:922-924",
        ),
        HCVModel(
            "dahari2007", (("peginterferon_alfa2b", "constant"), ("ribavirin", "constant")), proliferation=True,
            description="adds logistic hepatocyte proliferation (triphasic declines)",
            reference="Dahari, Ribeiro & Perelson 2007, Hepatology 46:16-21",
        ),
        HCVModel(
            "agi_constant",
            (("peginterferon_alfa2b", "constant"), ("ribavirin", "constant"), ("celgosivir", "constant")),
            description="three drugs with constant efficacies: eps/eta, rho, and the glucosidase inhibitor's phi/sigma; "
            "ribavirin-celgosivir interaction psi (0 = Bliss)",
            reference="hcvdyn (docs/models.md)", interaction=RBV_CEL,
        ),
        HCVModel(
            "agi_homeostatic",
            (("peginterferon_alfa2b", "constant"), ("ribavirin", "constant"), ("celgosivir", "constant")),
            proliferation=True, homeostatic=True,
            description="agi_constant with a homeostatic liver (equation 6): constant efficacies on a liver held near "
            "its carrying capacity; ribavirin-celgosivir interaction psi",
            reference="hcvdyn (docs/models.md); Dahari, Lo, Ribeiro & Perelson 2007", interaction=RBV_CEL,
        ),
        HCVModel(
            "pkpd3",
            (("peginterferon_alfa2b", "pk"), ("ribavirin", "pk"), ("celgosivir", "pk")),
            description="three drugs, each with its own PK and Hill link to its effects; ribavirin-celgosivir interaction psi",
            reference="hcvdyn (docs/models.md); PK-PD link as in Talal et al. 2006 and Snoeck et al. 2010",
            interaction=RBV_CEL,
        ),
        HCVModel(
            "pkpd3_homeostatic",
            (("peginterferon_alfa2b", "pk"), ("ribavirin", "pk"), ("celgosivir", "pk")), proliferation=True,
            homeostatic=True,
            description="pkpd3 with a homeostatic liver: proliferation with no influx, parameterised by the "
            "pretreatment infected fraction f0 (equation 6)",
            reference="hcvdyn (docs/models.md); Dahari, Lo, Ribeiro & Perelson 2007, J Theor Biol 247:371-381",
            interaction=RBV_CEL,
        ),
        HCVModel(
            "pkpd3_prolif",
            (("peginterferon_alfa2b", "pk"), ("ribavirin", "pk"), ("celgosivir", "pk")), proliferation=True,
            description="pkpd3 with hepatocyte proliferation",
            reference="hcvdyn (docs/models.md); Dahari et al. 2007", interaction=RBV_CEL,
        ),
    )
}



def get_model(name: str) -> HCVModel:
    """The named model; ValueError lists the known names."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None
