"""Generation jobs: request model, size/xDiT tables, argv plans, prompt rewrite, execution."""
