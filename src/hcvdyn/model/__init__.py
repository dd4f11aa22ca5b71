"""Model layer: parameter tables, drugs and their PK, dosing regimens, the HCV model declarations, and the
declared parameter sets and trial designs that ship in ``models/``."""
