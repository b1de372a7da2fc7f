"""Code that runs inside the HunyuanVideo container (copied in; never imported by hvinfra)."""
