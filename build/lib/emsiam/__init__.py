"""emsiam: SimSiam as alternating optimisation (Chen & He, CVPR 2021, Sec. 5)."""

__version__ = "0.1.0"
