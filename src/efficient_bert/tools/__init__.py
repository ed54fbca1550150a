"""The command-line tools above the library: ``efficient-bert`` (:mod:`.cli`), run reports (:mod:`.report`),
named runs of main.py (:mod:`.experiments`) and the methods comparison (:mod:`.compare`)."""
