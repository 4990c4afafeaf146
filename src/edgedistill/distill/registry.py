"""The built-in distillation methods, one line each: its kind, its builder, its words in a report, its paper, its
settings section and what it needs. Config validation, build_method, the refusal checks, the QAT filter, the
report's label, `edgedistill methods` and `edgedistill tune` read them through `methods.METHODS`.

Adding a method is its own file in distill/ (a Method or FeatureMethod subclass, its settings class, `build` and
`describe`, and `refuse` if there is something it cannot serve) plus one line here.
"""
from __future__ import annotations

from edgedistill.distill import at, crd, dist, dkd, fitnets, kd, mvkd, nkd, reviewkd
from edgedistill.distill.spec import MethodSpec

FEATURES = frozenset({"features"})

BUILTIN: dict[str, MethodSpec] = {
    "kd": MethodSpec("logit", kd.build, kd.describe, "Hinton, Vinyals, Dean 2015", standardize=True),
    "dkd": MethodSpec("logit", dkd.build, dkd.describe, "Zhao et al., CVPR 2022", dkd.DKDConfig, standardize=True),
    "dist": MethodSpec("logit", dist.build, dist.describe, "Huang et al., NeurIPS 2022", dist.DISTConfig,
                       standardize=True),
    "nkd": MethodSpec("logit", nkd.build, nkd.describe, "Yang et al., ICCV 2023", nkd.NKDConfig),
    "mvkd": MethodSpec("logit", mvkd.build, mvkd.describe, "edgedistill's own, unpublished",
                       needs=frozenset({"logits", "views"}), refuse=mvkd.refuse),
    "fitnets": MethodSpec("feature", fitnets.build, fitnets.describe, "Romero et al., ICLR 2015",
                          fitnets.FitNetsConfig, FEATURES),
    "at": MethodSpec("feature", at.build, at.describe, "Zagoruyko, Komodakis, ICLR 2017", at.ATConfig, FEATURES),
    "reviewkd": MethodSpec("feature", reviewkd.build, reviewkd.describe, "Chen, Liu, Zhao, Jia, CVPR 2021",
                           reviewkd.ReviewKDConfig, FEATURES),
    "crd": MethodSpec("relation", crd.build, crd.describe, "Tian, Krishnan, Isola, ICLR 2020", crd.CRDConfig,
                      FEATURES, refuse=crd.refuse),
}
