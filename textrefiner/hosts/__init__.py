"""Host methods (CoOp, MaPLe, PromptKD): prompt learners and encoders over CLIP's own modules."""
