"""FBK's CTC-compressing Conformer speech translation, inside ESPnet2.

Before any of our modules imports ESPnet's attention, its import-time notice about
flash-attention is silenced (:mod:`espnet2_ext.utils.espnet_notices`).
"""

from espnet2_ext.utils.espnet_notices import silence_flash_attention_notice

silence_flash_attention_notice()
