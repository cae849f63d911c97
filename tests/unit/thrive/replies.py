"""Tenant replies for the client's unit tests, built by hand as the vendor pages and WCF would send them.

Kept out of `thrive/documents.py` and `envelope.py` on purpose: the client only reads replies, and a reply written
by the same module that reads it would prove nothing.
"""

from xml.sax.saxutils import escape

NAMESPACE = "http://partner.informz.net/aapi/2009/08/"
SOAP_NAMESPACE = "http://schemas.xmlsoap.org/soap/envelope/"


def response_envelope(document: str) -> bytes:
    """A `PostInformzMessage` reply carrying `document` as escaped text (WCF's default wrapper names)."""
    return (f'<s:Envelope xmlns:s="{SOAP_NAMESPACE}"><s:Body><PostInformzMessageResponse xmlns="{NAMESPACE}">'
            f"<PostInformzMessageResult>{escape(document)}</PostInformzMessageResult></PostInformzMessageResponse>"
            "</s:Body></s:Envelope>").encode()


def fault_envelope(code: str, reason: str) -> bytes:
    """A SOAP fault whose `InformzAAPIFault` detail names the code, as "SOAP Fault Error Codes" describes it."""
    return (f'<s:Envelope xmlns:s="{SOAP_NAMESPACE}"><s:Body><s:Fault><faultcode>s:Client</faultcode>'
            f'<faultstring xml:lang="en-US">{escape(reason)}</faultstring><detail>'
            f'<InformzAAPIFault xmlns="{NAMESPACE}"><Code>{escape(code)}</Code><Reason>{escape(reason)}</Reason>'
            "</InformzAAPIFault></detail></s:Fault></s:Body></s:Envelope>").encode()
