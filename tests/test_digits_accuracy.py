"""digits_cnn learns the real handwritten digits: >97% held-out accuracy on a reduced budget."""
import pytest

pytest.importorskip("sklearn", reason="scikit-learn provides the digits data (pip install -e '.[dev]')")

from atrous.demo import DEMO_CONFIG  # noqa: E402
from atrous.cli import make_trainer  # noqa: E402


def test_digits_cnn_exceeds_97_percent_on_held_out_digits(tmp_path):
    cfg = dict(DEMO_CONFIG, epochs=6, out=str(tmp_path))
    trainer = make_trainer(cfg, progress=False)
    history = trainer.fit(cfg["epochs"])
    assert len(trainer.val_loader.dataset) == 359  # the held-out split, never trained on
    assert history[-1].val_acc > 0.97, [round(h.val_acc, 4) for h in history]
