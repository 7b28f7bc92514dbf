"""`python -m tierwise.testing --port 8011 --latency 0.2 --script file.json`."""

from tierwise.testing.runner import main

if __name__ == "__main__":
    main()
