"""The Keras-style model summary lists the layers a model keeps in an nn.ModuleList (the Jena models'
recurrent layers), with their output shapes and parameter counts, instead of one "(not called)" row."""

from __future__ import annotations

import torch

from seqtorch.models.jena import build_jena_model
from seqtorch.training import model_summary, regression_task


def test_jena_summary_shows_its_gru_layers():
    model = build_jena_model("gru_stacked", 14, 40, keras_faithful=True)
    text = model_summary(model, regression_task(), (torch.randn(8, 40, 14), torch.zeros(8)))
    rows = {line.split()[0]: line for line in text.splitlines() if line.startswith(("recurrent", "  recurrent"))
            for line in [line.strip()]}
    assert "(not called)" not in text
    # Keras' parameter counts of GRU(32) on 14 features and GRU(64) on 32 (reset_after=False: one bias).
    assert "[(8, 40, 32), (1, 8, 32)]" in rows["recurrent.0"] and rows["recurrent.0"].endswith("4,512")
    assert "[(8, 40, 64), (1, 8, 64)]" in rows["recurrent.1"] and rows["recurrent.1"].endswith("18,624")
    assert rows["recurrent"].split() == ["recurrent", "(ModuleList)", "23,136"]  # the members' sum, no shape
