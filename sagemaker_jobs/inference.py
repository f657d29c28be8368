"""SageMaker batch-transform entrypoint (script mode): the inference toolkit imports these four functions."""

from shopwise_jobs.inference import input_fn, model_fn, output_fn, predict_fn

__all__ = ["input_fn", "model_fn", "output_fn", "predict_fn"]
