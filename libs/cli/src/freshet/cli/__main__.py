"""`python -m freshet.cli`."""

from freshet.cli.app import main

if __name__ == "__main__":
    main()
