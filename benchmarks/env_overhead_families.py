"""Env overhead for the SDXL, SD3 and FLUX backbones: identity episode time over plain pipeline time, same run.

Run: ``python benchmarks/env_overhead_families.py [--repeats 7] [--models sdxl,sd3,flux]``

The same measurement as ``env_overhead.py`` (whose ``main`` it reuses: plain ``pipe(query, ...)`` and one
identity episode per preview, alternating, medians), on the tiny random-weight pipelines of the other families
(64x64 images, CPU). ``guidance_scale=7.5`` is classifier-free guidance for SDXL and SD3 (the model sees batch 2)
and FLUX.1-dev's guidance embedding for FLUX. Results go to ``benchmarks/results/env_overhead_families.{json,csv}``.
"""

from __future__ import annotations

from collections.abc import Callable

from env_overhead import main

from promptloop_env.backbones.tiny import (
    tiny_flux_pipeline,
    tiny_stable_diffusion_3_pipeline,
    tiny_stable_diffusion_xl_pipeline,
)

MODELS: dict[str, Callable[[], object]] = {
    "sdxl": tiny_stable_diffusion_xl_pipeline,
    "sd3": tiny_stable_diffusion_3_pipeline,
    "flux": tiny_flux_pipeline,
}


if __name__ == "__main__":
    main(MODELS, "env_overhead_families", __doc__)
