"""Auth methods: turn a bearer token (a JWT) into verified identity variables, then binding rules
into the token's links. No network: keys are configured locally.

::

    BearerToken --verify_jwt(keys, bound issuer/audiences, leeways)--> claims
        kubernetes: claims -> {"serviceaccount": {"namespace", "name", "uid"}}
        jwt:        ClaimMappings / ListClaimMappings -> {"value": {...}, "list": {...}}
    vars --binding rules (Selector with lictor.common.filter; BindName "${serviceaccount.name}")-->
        ServiceIdentities / NodeIdentities / Roles / Policies / TemplatedPolicies

Config keys (Consul's names): kubernetes ``Host``, ``CACert``, ``ServiceAccountJWT`` (accepted,
unused offline) and ``JWTValidationPubKeys`` (PEM public keys that sign service-account tokens);
jwt ``JWTValidationPubKeys`` or ``JWKS`` (an inline JWK set), ``BoundIssuer``,
``BoundAudiences``, ``ClaimMappings``, ``ListClaimMappings``, ``JWTSupportedAlgs``,
``ExpirationLeeway``, ``NotBeforeLeeway``, ``ClockSkewLeeway``. Supported algorithms: RS256,
RS384, RS512, ES256, ES384 (never ``none`` or HMAC).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from lictor.common.errors import ValidationError
from lictor.common.filter import compile_filter

__all__ = ["AUTH_METHOD_TYPES", "JWTError", "bindings_for", "identity_vars", "validate_method_config",
           "verify_jwt"]

AUTH_METHOD_TYPES = ("kubernetes", "jwt")
_ALGS = {"RS256": hashes.SHA256, "RS384": hashes.SHA384, "RS512": hashes.SHA512,
         "ES256": hashes.SHA256, "ES384": hashes.SHA384}


class JWTError(ValidationError):
    """The bearer token failed validation (the message never contains the token)."""

    status = 403
    error_code = "JWTInvalid"  # stable across RPC (lictor.common.rpc.errmap)


def _b64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _load_keys(cfg: dict[str, Any]) -> list[tuple[str | None, Any]]:
    keys: list[tuple[str | None, Any]] = []
    for pem in cfg.get("JWTValidationPubKeys") or []:
        try:
            keys.append((None, serialization.load_pem_public_key(pem.encode())))
        except (ValueError, TypeError) as exc:
            raise ValidationError(f"Invalid JWTValidationPubKeys: {exc}") from None
    jwks = cfg.get("JWKS")
    if jwks:
        doc = json.loads(jwks) if isinstance(jwks, str) else jwks
        for jwk in doc.get("keys", []):
            keys.append((jwk.get("kid"), _jwk_key(jwk)))
    return keys


def _jwk_key(jwk: dict[str, Any]) -> Any:
    def num(k: str) -> int:
        return int.from_bytes(_b64(jwk[k]), "big")
    try:
        if jwk.get("kty") == "RSA":
            return rsa.RSAPublicNumbers(num("e"), num("n")).public_key()
        if jwk.get("kty") == "EC":
            curve = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}[jwk["crv"]]
            return ec.EllipticCurvePublicNumbers(num("x"), num("y"), curve).public_key()
    except (KeyError, ValueError) as exc:
        raise ValidationError(f"Invalid JWKS key: {exc!r}") from None
    raise ValidationError(f"Invalid JWKS key: unsupported kty {jwk.get('kty')!r}")


def validate_method_config(mtype: str, cfg: dict[str, Any]) -> None:
    if mtype not in AUTH_METHOD_TYPES:
        raise ValidationError(f"Invalid Auth Method: Type should be one of: {', '.join(AUTH_METHOD_TYPES)}")
    if not isinstance(cfg, dict):
        raise ValidationError("Invalid Auth Method: Config must be an object")
    keys = _load_keys(cfg)
    if not keys:
        raise ValidationError("Invalid Auth Method: Config needs JWTValidationPubKeys"
                              + (" or JWKS" if mtype == "jwt" else "") + " (Lictor validates tokens offline)")
    for alg in cfg.get("JWTSupportedAlgs") or []:
        if alg not in _ALGS:
            raise ValidationError(f"Invalid Auth Method: unsupported JWT algorithm {alg!r}")


def _verify_sig(alg: str, key: Any, signing_input: bytes, sig: bytes) -> bool:
    h = _ALGS[alg]()
    try:
        if alg.startswith("RS") and isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, signing_input, padding.PKCS1v15(), h)
            return True
        if alg.startswith("ES") and isinstance(key, ec.EllipticCurvePublicKey):
            n = (key.curve.key_size + 7) // 8
            if len(sig) != 2 * n:
                return False
            der = encode_dss_signature(int.from_bytes(sig[:n], "big"), int.from_bytes(sig[n:], "big"))
            key.verify(der, signing_input, ec.ECDSA(h))
            return True
    except InvalidSignature:
        return False
    return False


def verify_jwt(token: str, cfg: dict[str, Any], *, now: float, kubernetes: bool = False) -> dict[str, Any]:
    """Verified claims of ``token`` or JWTError."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        raise JWTError("Invalid bearer token: not a JWT")
    try:
        header = json.loads(_b64(parts[0]))
        claims = json.loads(_b64(parts[1]))
        sig = _b64(parts[2])
    except (ValueError, UnicodeDecodeError):
        raise JWTError("Invalid bearer token: malformed") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JWTError("Invalid bearer token: malformed")
    alg = header.get("alg")
    allowed = cfg.get("JWTSupportedAlgs") or list(_ALGS)
    if alg not in _ALGS or alg not in allowed:
        raise JWTError(f"Invalid bearer token: unsupported algorithm {alg!r}")
    signing_input = f"{parts[0]}.{parts[1]}".encode()
    kid = header.get("kid")
    keys = [k for (kkid, k) in _load_keys(cfg) if kkid is None or kid is None or kkid == kid]
    if not any(_verify_sig(alg, k, signing_input, sig) for k in keys):
        raise JWTError("Invalid bearer token: signature verification failed")
    skew = float(cfg.get("ClockSkewLeeway") or 60)
    exp_leeway = float(cfg.get("ExpirationLeeway") or 0)
    nbf_leeway = float(cfg.get("NotBeforeLeeway") or 0)
    if "exp" in claims and now > float(claims["exp"]) + exp_leeway + skew:
        raise JWTError("Invalid bearer token: token is expired")
    if "nbf" in claims and now < float(claims["nbf"]) - nbf_leeway - skew:
        raise JWTError("Invalid bearer token: token is not valid yet")
    if cfg.get("BoundIssuer") and claims.get("iss") != cfg["BoundIssuer"]:
        raise JWTError("Invalid bearer token: issuer not allowed")
    bound = cfg.get("BoundAudiences") or []
    if bound:
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud] if aud else []
        if not set(auds) & set(bound):
            raise JWTError("Invalid bearer token: audience not allowed")
    if kubernetes and claims.get("iss") not in (None, "kubernetes/serviceaccount") and not cfg.get("BoundIssuer"):
        pass  # projected tokens carry the cluster's issuer; accepted when the signature verifies
    return claims


def identity_vars(mtype: str, cfg: dict[str, Any], claims: dict[str, Any]) -> dict[str, Any]:
    """The selectable variables of a verified login."""
    if mtype == "kubernetes":
        k8s = claims.get("kubernetes.io") or {}
        sa = k8s.get("serviceaccount") or {}
        ns = k8s.get("namespace") or claims.get("kubernetes.io/serviceaccount/namespace", "")
        name = sa.get("name") or claims.get("kubernetes.io/serviceaccount/service-account.name", "")
        uid = sa.get("uid") or claims.get("kubernetes.io/serviceaccount/service-account.uid", "")
        if not ns or not name:
            raise JWTError("Invalid bearer token: not a Kubernetes service account token")
        return {"serviceaccount": {"namespace": ns, "name": name, "uid": uid}}
    value = {var: str(_claim(claims, claim)) for claim, var in (cfg.get("ClaimMappings") or {}).items()
             if _claim(claims, claim) is not None}
    lists = {}
    for claim, var in (cfg.get("ListClaimMappings") or {}).items():
        v = _claim(claims, claim)
        if v is not None:
            lists[var] = [str(x) for x in (v if isinstance(v, list) else [v])]
    return {"value": value, "list": lists}


def _claim(claims: dict[str, Any], path: str) -> Any:
    cur: Any = claims
    for part in path.lstrip("/").split("/"):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


_VAR = re.compile(r"\$\{([^}]+)\}")


def _interpolate(template: str, variables: dict[str, Any]) -> str:
    def sub(m: re.Match[str]) -> str:
        cur: Any = variables
        for part in m.group(1).strip().split("."):
            if not isinstance(cur, dict) or part not in cur:
                raise ValidationError(f"cannot interpolate {m.group(0)}: unknown variable")
            cur = cur[part]
        return str(cur)
    return _VAR.sub(sub, template)


def bindings_for(rules: list[dict[str, Any]], variables: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """``(BindType, BindName, BindVars)`` for each binding rule whose Selector matches."""
    out = []
    for r in rules:
        sel = r.get("Selector") or ""
        if sel and not compile_filter(sel).matches(variables):
            continue
        name = _interpolate(r.get("BindName") or "", variables)
        bvars = {k: _interpolate(str(v), variables) for k, v in (r.get("BindVars") or {}).items()}
        out.append((r["BindType"], name, bvars))
    return out
