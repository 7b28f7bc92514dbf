"""The tierwise command line (typer + rich), a thin layer over Session."""
