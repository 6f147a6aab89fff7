"""The estimation methods a job can ask for."""

EM = "em"
GMM = "gmm"
METHODS = (EM, GMM)
