"""Read models: disposable views rebuilt from the log, each committed with its position.

Views store personal fields still sealed (copied from the stored events without decrypting)
and open them only to answer a request, so a view database holds no plaintext personal data
and needs no update when someone is erased.
"""
