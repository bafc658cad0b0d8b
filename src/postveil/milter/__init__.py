"""postveil-milter: the pymilter front end that inspects and routes outgoing mail.

pymilter's C module is itself named ``milter``; this package is only importable as
``postveil.milter``, so it never shadows it.
"""
