"""The four shared benchmarks (../shared/datasets) as the translator experiments name them, and README Table 1's
settings for them (4 worked examples from the end of dev; strength 0.25, PopQA 0.5; chosen on dev)."""
DATASETS = ["2wikimultihopqa-comparison", "2wikimultihopqa", "hotpotqa", "popqa"]
TABLE1_FEW_SHOT = 4


def table1_scale(dataset: str) -> float:
    return 0.5 if dataset == "popqa" else 0.25
