"""docopt entry points; each module's ``main(argv=None)`` is a console script."""
