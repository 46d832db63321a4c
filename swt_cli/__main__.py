"""``python -m swt_cli`` is the ``swt`` command."""

from .cli import main

if __name__ == "__main__":
    main()
