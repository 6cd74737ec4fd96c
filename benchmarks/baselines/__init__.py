"""Pure-Python pipelines the engine is measured against, in the same run (see ``queue_pipeline``)."""

from baselines.queue_pipeline import QueuePacket, QueuePipeline

__all__ = ["QueuePacket", "QueuePipeline"]
