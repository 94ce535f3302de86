# The seed's Python ServiceAuthClient (shared/seeds/001_8dd6d015215acef5.txt, "Python
# Service-to-Service Authentication Example"), copied verbatim: the imports and the class, byte
# for byte. The seed's example `main()` (a Flask app calling https://api.example.com) is replaced
# by driver.py. tests/seed_clients.rs checks that this file still contains the seed's text.

import time
import requests
import jwt
from jwt.jwks_client import PyJWKClient

class ServiceAuthClient:
    def __init__(self, auth_service_url, client_id=None, client_secret=None, scopes=None):
        self.auth_service_url = auth_service_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.scopes = scopes or []
        
        self.access_token = None
        self.token_expiry = None
        
        # JWKS client for token validation
        self.jwks_client = PyJWKClient(f"{self.auth_service_url}/.well-known/jwks.json")
    
    def get_access_token(self):
        # Check if we have a valid token already
        if self.access_token and self.token_expiry and self.token_expiry > time.time():
            return self.access_token
        
        # Get a new token
        try:
            response = requests.post(
                f"{self.auth_service_url}/token",
                json={
                    "grantType": "client_credentials",
                    "clientId": self.client_id,
                    "clientSecret": self.client_secret,
                    "scope": " ".join(self.scopes)
                }
            )
            response.raise_for_status()
            data = response.json()
            
            self.access_token = data["accessToken"]
            self.token_expiry = time.time() + data["expiresIn"]
            
            return self.access_token
        except Exception as e:
            print(f"Error obtaining access token: {str(e)}")
            raise
    
    def call_service(self, url, method="GET", data=None, headers=None):
        token = self.get_access_token()
        
        headers = headers or {}
        headers["Authorization"] = f"Bearer {token}"
        
        try:
            response = requests.request(
                method=method,
                url=url,
                json=data,
                headers=headers
            )
            response.raise_for_status()
            return response.json()
        except Exception as e:
            print(f"Service call error: {str(e)}")
            raise
    
    # Token validation for receiving service
    def validate_token(self, token):
        try:
            # Decode token without verification to get headers
            unverified_header = jwt.get_unverified_header(token)
            
            # Get the signing key
            signing_key = self.jwks_client.get_signing_key_from_jwt(token)
            
            # Verify the token
            payload = jwt.decode(
                token,
                signing_key.key,
                algorithms=["ES256", "RS256"],
                options={"verify_aud": True, "verify_iss": True},
                audience="api",  # Must match your service's audience
                issuer="auth-service"  # Must match the token issuer
            )
            
            # Check scopes if needed
            # required_scope = "required:scope"
            # if "scope" not in payload or required_scope not in payload["scope"].split():
            #     raise ValueError("Token lacks required scope")
            
            return {
                "valid": True,
                "payload": payload
            }
        except Exception as e:
            return {
                "valid": False,
                "error": str(e)
            }
