"""Speech translation: the model, its loss and its searches."""

# The beam-search rule sets of espnet2_ext.st.beam_search, here so that command lines
# can offer them without importing torch.
SEARCHES = ("fairseq", "espnet")
