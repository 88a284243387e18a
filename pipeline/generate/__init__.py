"""The data generator: synthetic events (`events`) and its command line (`cli`)."""
