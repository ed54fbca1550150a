"""efficient-bert: fast, budget-aware pretraining of BERT-style encoders on MosaicML Composer."""

__version__ = "0.1.0"
