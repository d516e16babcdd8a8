"""UVH5 subband groups → one calibration-ready Measurement Set.

Two steps, which the cluster runs as a chord and the CLI runs on one node:

1. :func:`write_subband_part` — one subband file, phased to the group's shared
   phase center, into a part in the staging directory (one task per subband);
2. :func:`combine_parts` — the parts assembled channel-wise into one spectral
   window of ascending frequency, validated, published under the final name,
   and the parts removed.

:func:`plan_group` (headers only) comes first and produces the
JSON-serialisable :class:`ConversionPlan` that both steps receive (its ``ms``
is the :class:`~contimg.msmodel.MsModel` of the MS to be written);
:func:`convert_group` does everything on one node.

Example
-------
>>> from contimg.conversion import convert_group
>>> result = convert_group(files, "group.ms", staging_dir="/dev/shm/contimg")  # doctest: +SKIP
>>> result.validation["uvw_max_error_m"]  # doctest: +SKIP
"""

from contimg.conversion.combine import ConversionResult, combine_parts
from contimg.conversion.group import convert_group
from contimg.conversion.plan import ConversionPlan, plan_group
from contimg.conversion.subband import part_path, write_subband_part
from contimg.conversion.validate import ValidationReport, validate_ms

__all__ = [
    "ConversionPlan",
    "ConversionResult",
    "ValidationReport",
    "combine_parts",
    "convert_group",
    "part_path",
    "plan_group",
    "validate_ms",
    "write_subband_part",
]
