# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Documentation of the connection options shared by dicom_echo, dicom_query and dicom_roundtrip.

The options themselves come from dicom_argument_spec() in plugins/module_utils/dicom_client.py.
"""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  host:
    description: Host name or IP address of the DICOM peer (the PACS, RIS worklist or modality).
    type: str
    required: true
  port:
    description: TCP port of the DICOM peer (1 to 65535).
    type: int
    default: 104
  called_ae:
    description:
      - AE title of the peer (the I(called) AE title). 1 to 16 ASCII characters, no backslash,
        no control characters, not all spaces.
    type: str
    required: true
  calling_ae:
    description: Our own AE title (the I(calling) AE title); the peer may only accept known ones.
    type: str
    default: CLINUPG
  timeout:
    description:
      - Seconds to wait for the TCP connection, the association answer and each DIMSE response.
    type: float
    default: 10.0
  tls:
    description:
      - Use DICOM TLS. Implied when any O(tls_ca_cert), O(tls_client_cert) or O(tls_client_key) is set.
      - Without O(tls_ca_cert) the system trust store verifies the peer.
    type: bool
    default: false
  tls_ca_cert:
    description: PEM file with the CA certificate(s) that signed the peer's certificate.
    type: path
  tls_client_cert:
    description: PEM file with our client certificate, for peers that require one.
    type: path
  tls_client_key:
    description: PEM file with the private key of O(tls_client_cert).
    type: path
  tls_client_key_passphrase:
    description: Passphrase of O(tls_client_key) when the key is encrypted.
    type: str
  tls_check_hostname:
    description: Check that the peer certificate matches O(host). Turn off only for a lab.
    type: bool
    default: true
"""
