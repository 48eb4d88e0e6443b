"""An SMTP server for the tests that wants STARTTLS, then AUTH (PLAIN or
LOGIN) as one user, before it takes mail. Each mail is kept in a Maildir
with the user it was sent as (X-Authenticated-As); each refused login is
counted in `refused` (one line per attempt) so that a test can tell a
refusal from a mail that never came.

usage: smtp_auth.py PORT MAILDIR CERT KEY USER PASSWORD
CERT `-`: no TLS at all, and AUTH offered in the clear (a server that
would take a password unprotected).
"""
import mailbox
import os
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, maildir, cert, key, user, password = sys.argv[1:7]
box = mailbox.Maildir(maildir, create=True)
refused = os.path.join(maildir, "refused")


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == user
        and auth_data.password.decode() == password
    )
    if not ok:
        with open(refused, "a") as f:
            f.write(mechanism + "\n")
    # Not handled: aiosmtpd answers the refusal (535) itself.
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


class Handler:
    async def handle_DATA(self, server, session, envelope):
        who = session.auth_data.login.decode() if session.authenticated else ""
        tls = "yes" if session.ssl else "no"
        head = f"X-Authenticated-As: {who}\r\nX-Tls: {tls}\r\n".encode()
        box.add(head + envelope.original_content)
        return "250 OK"


ctx = None
if cert != "-":
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
controller = Controller(
    Handler(),
    hostname="127.0.0.1",
    port=int(port),
    ready_timeout=10,
    tls_context=ctx,
    require_starttls=ctx is not None,
    authenticator=authenticate,
    auth_required=True,
    auth_require_tls=ctx is not None,
)
controller.start()
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
done.wait()
controller.stop()
