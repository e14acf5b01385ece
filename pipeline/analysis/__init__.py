"""The paper's analyses of trained models (Tables 5, 12; Figs 2, 4, 6, 8, 9).

`run.analyze_dataset` is the stage; `gradients`, `activations` and `cross_section` hold one
analysis each. Nothing is imported here, so `pipeline.params` can import `analysis.params`
without pulling in torch models.
"""
