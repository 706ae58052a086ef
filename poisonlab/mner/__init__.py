"""MNER-QG: multimodal NER as machine reading comprehension with query grounding (AAAI 2023).

One module per concept: `conll` (data files), `spans` (BIO <-> spans), `images`, `boxes`,
`synthetic` (generator), `queries`, `model` (encoder + CNN + fusion + heads), `anchors`
(grounding targets), `losses`, `decoding`, `scorer`, `config`, `train`, `cli`."""
