"""Training only: the learned generator (a FiLM U-Net), its engine, teacher, synthetic faces, quality bench
and registry. It is trained under DP (inference.dp) but does not serve; docs/aging.md says why."""
