"""``python -m swt_cli`` is the ``swt`` command."""

from ._entry import main

if __name__ == "__main__":
    main()
