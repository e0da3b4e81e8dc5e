// A real OpenID Provider for MMT's tests: oidc-provider (an OpenID-certified implementation),
// configured, never reimplemented. Access tokens are JWTs for the resource `urn:mmt:api`
// (audience `mmt-api`), issued by the client-credentials grant to the clients below, with the
// role claims an identity provider would add (Keycloak's `realm_access.roles`, Entra's
// `roles`).
//
// Environment: PORT; KEYS (a file holding a JSON array of private JWKs: the first signs, all
// are published, so a restart with [new, old] is a key rotation); CLIENTS (JSON: [{client_id,
// client_secret, claims}]). Prints "ready <issuer>" once it listens.

import { readFileSync } from "node:fs";
import Provider from "oidc-provider";

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const keys = JSON.parse(readFileSync(process.env.KEYS, "utf8"));
const clients = JSON.parse(process.env.CLIENTS);
const claimsOf = new Map(clients.map((c) => [c.client_id, c.claims || {}]));

// The resource servers tokens can be asked for: MMT's API, the same with a one-second
// lifetime (for expiry), and another API (for a wrong audience).
const resources = {
  "urn:mmt:api": { audience: "mmt-api", accessTokenTTL: 300 },
  "urn:mmt:api:short": { audience: "mmt-api", accessTokenTTL: 1 },
  "urn:other:api": { audience: "other-api", accessTokenTTL: 300 },
};

const provider = new Provider(issuer, {
  jwks: { keys },
  clients: clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    grant_types: ["client_credentials"],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: "client_secret_post",
  })),
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => "urn:mmt:api",
      getResourceServerInfo: (ctx, resource) => {
        const server = resources[resource];
        if (!server) throw new Error(`unknown resource ${resource}`);
        return { scope: "mmt", accessTokenFormat: "jwt", jwt: { sign: { alg: "RS256" } }, ...server };
      },
    },
  },
  extraTokenClaims: (ctx, token) => claimsOf.get(token.clientId) || {},
});
provider.proxy = false;
provider.listen(port, "127.0.0.1", () => console.log(`ready ${issuer}`));
