"""`realnvp`: RealNVP affine coupling (Dinh et al. 2016) as a stand-alone density model (§4.4).

Everything as `maf`, with `flow="realnvp"`.

    python -m zoo.realnvp --workdir=/tmp/realnvp [--dataset=fashion_mnist]
"""

from zoo import common
from zoo import maf

Config = common.preset(maf.Config, "realnvp", flow="realnvp")
build_model = maf.build_model

if __name__ == "__main__":
    common.main_for(__name__)
