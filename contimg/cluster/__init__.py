"""An embedded single-machine cluster: a private Redis, Celery workers, the producer, beat.

Used by ``contimg demo``, the benchmarks and the cluster tests, so that none of
them touches a shared Redis database. Every process is started as a real
subprocess (no eager mode) and stopped by its own pid.
"""

from contimg.cluster.processes import ClusterProcess, EmbeddedCluster, subprocess_env
from contimg.cluster.redis_server import RedisServer, free_port

__all__ = ["ClusterProcess", "EmbeddedCluster", "RedisServer", "free_port", "subprocess_env"]
