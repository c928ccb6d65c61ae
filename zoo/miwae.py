"""`miwae`: MIWAE(M = 8, K = 8), the average of 8 IWAE-8 bounds (Rainforth et al. 2018).

A preset of `iwae`: a looser bound than IWAE-64 with a better
signal-to-noise ratio of the encoder's gradient.

    python -m zoo.miwae --workdir=/tmp/miwae --dataset=fashion_mnist
"""

from zoo import common
from zoo import iwae

Config = common.preset(iwae.Config, "miwae", k=8, m=8)
build_model = iwae.build_model

if __name__ == "__main__":
    common.main_for(__name__)
