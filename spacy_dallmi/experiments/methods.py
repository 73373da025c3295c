"""The methods the project compares, by the names their metrics files and report rows use.

A module of constants only, so the command line can name them without importing torch.
"""

#: The four rows of the paper's Table 2, in its order.
METHODS = ("none", "ft_partial", "ft_full", "dallmi")
#: Every method the project runs, in report order: the paper's rows, the missing-label
#: baselines of Cole et al. 2021 (AN-LS, WAN), DALLMi at lambda = 0 and with the paper's preset.
ALL_METHODS = (
    "none",
    "ft_partial",
    "an_ls",
    "wan",
    "ft_full",
    "dallmi",
    "dallmi_lambda0",
    "dallmi_paper",
)
#: Methods that read no hidden-label pattern: one run serves every ratio.
RATIO_FREE_METHODS = ("none", "ft_full")
METHOD_DESCRIPTIONS = {
    "none": "the source model, no adaptation",
    "ft_partial": "BCE fine-tuning on the partial labels (hidden positives count as negatives)",
    "an_ls": "AN-LS: fine-tuning, unlabeled = negative, label smoothing 0.1 (Cole et al. 2021)",
    "wan": "WAN: fine-tuning, negatives weighted 1/(L-1) (Cole et al. 2021)",
    "ft_full": "BCE fine-tuning on all labels (upper bound; does not depend on the ratio)",
    "dallmi": "DALLMi with the defaults: variational PU loss, MixUp and label-balanced batches",
    "dallmi_lambda0": "DALLMi without MixUp (lambda = 0: what the reference code optimises)",
    "dallmi_paper": "DALLMi with the paper's preset (configs/adapt_paper.cfg)",
}
