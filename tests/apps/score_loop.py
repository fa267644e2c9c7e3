"""An unmodified scoring script: no otel-ai-audit import anywhere.

Usage: python score_loop.py ROWS [--forever READY_FILE]
"""

import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

rng = np.random.default_rng(7)
features = rng.normal(size=(300, 4))
model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
rows = int(sys.argv[1])
for index in range(rows):
    print(int(model.predict(features[index:index + 1])[0]), flush=True)
if len(sys.argv) > 2 and sys.argv[2] == "--forever":
    Path(sys.argv[3]).write_text("ready")
    while True:
        model.predict(features[:1])
        time.sleep(0.01)
