# A real SMTP server for the e-mail tests: aiosmtpd (PyPI) on a loopback port. Each accepted
# mail is parsed with Python's own e-mail parser and written as <n>.json into --out.
# --fail-first N answers "451 try later" to the first N mails; --reject-rcpt ADDR answers
# 550 to that recipient; --cert/--key offer (and require) STARTTLS; --user/--password
# require AUTH.
import argparse
import email
import email.policy
import json
import os
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--cert")
parser.add_argument("--key")
parser.add_argument("--fail-first", type=int, default=0)
parser.add_argument("--reject-rcpt")
parser.add_argument("--user")
parser.add_argument("--password")
args = parser.parse_args()


class Handler:
    def __init__(self):
        self.n_data = 0
        self.n_saved = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if args.reject_rcpt and address == args.reject_rcpt:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.n_data += 1
        if self.n_data <= args.fail_first:
            return "451 4.3.0 try later"
        self.n_saved += 1
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        plain = message.get_body(("plain",))
        html = message.get_body(("html",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
            "headers": [[name, str(value)] for name, value in message.items()],
            "subject": str(message["subject"]),
            "message_id": str(message["message-id"]),
            "text": plain.get_content() if plain is not None else None,
            "html": html.get_content() if html is not None else None,
            "raw": raw.decode("utf-8", "replace"),
        }
        path = os.path.join(args.out, "%04d.json" % self.n_saved)
        with open(path + ".tmp", "w") as file:
            json.dump(record, file)
        os.rename(path + ".tmp", path)
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    if (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == args.user.encode()
        and auth_data.password == args.password.encode()
    ):
        return AuthResult(success=True)
    # handled=False: aiosmtpd answers 535 itself (True would leave the client hanging).
    return AuthResult(success=False, handled=False)


options = {}
if args.cert:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    options.update(tls_context=context, require_starttls=True)
if args.user:
    options.update(auth_required=True, auth_require_tls=True, authenticator=authenticator)

controller = Controller(Handler(), hostname="127.0.0.1", port=args.port, **options)
controller.start()
print("ready", flush=True)
sys.stdout.flush()
threading.Event().wait()
