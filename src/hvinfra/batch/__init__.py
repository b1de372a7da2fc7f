"""`hvinfra batch`: a prompt list run line by line, resumable, spread over the GPUs."""
