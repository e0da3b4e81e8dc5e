// A real OpenID Provider for MMT's tests: oidc-provider (an OpenID-certified implementation),
// configured, never reimplemented. Access tokens are JWTs for the resource `urn:mmt:api`
// (audience `mmt-api`), issued by the client-credentials grant to the clients below, with the
// role claims an identity provider would add (Keycloak's `realm_access.roles`, Entra's
// `roles`).
//
// Environment: PORT; KEYS (a file holding a JSON array of private JWKs: the first signs, all
// are published, so a restart with [new, old] is a key rotation); CLIENTS (JSON: [{client_id,
// client_secret, claims}]); WEB_CLIENT (optional JSON {client_id, redirect_uri, claims}: a
// public client for a web page's authorization-code flow with PKCE, signing in through the
// provider's own login and consent pages, which accept any user name). Prints
// "ready <issuer>" once it listens.

import { readFileSync } from "node:fs";
import Provider from "oidc-provider";

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const keys = JSON.parse(readFileSync(process.env.KEYS, "utf8"));
const clients = JSON.parse(process.env.CLIENTS || "[]");
const web = process.env.WEB_CLIENT ? JSON.parse(process.env.WEB_CLIENT) : null;
const claimsOf = new Map([...clients, ...(web ? [web] : [])].map((c) => [c.client_id, c.claims || {}]));

// The resource servers tokens can be asked for: MMT's API, the same with a one-second
// lifetime (for expiry), and another API (for a wrong audience).
const resources = {
  "urn:mmt:api": { audience: "mmt-api", accessTokenTTL: 300 },
  "urn:mmt:api:short": { audience: "mmt-api", accessTokenTTL: 1 },
  "urn:other:api": { audience: "other-api", accessTokenTTL: 300 },
};

const provider = new Provider(issuer, {
  jwks: { keys },
  clients: [
    ...clients.map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      grant_types: ["client_credentials"],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: "client_secret_post",
    })),
    // A public client: no secret, PKCE required (oidc-provider's default for such clients).
    ...(web
      ? [{
          client_id: web.client_id,
          grant_types: ["authorization_code", "refresh_token"],
          response_types: ["code"],
          redirect_uris: [web.redirect_uri],
          post_logout_redirect_uris: [web.redirect_uri],
          token_endpoint_auth_method: "none",
        }]
      : []),
  ],
  pkce: { required: () => true },
  // Offline access for the public client's silent refresh, granted on the consent page.
  issueRefreshToken: (ctx, client, code) =>
    client.grantTypeAllowed("refresh_token") && code.scopes.has("offline_access"),
  // A resource server's own lifetime wins (`urn:mmt:api:short` lives one second).
  ttl: {
    AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL ?? 300,
    ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? 300,
    RefreshToken: 3600, Session: 3600, Grant: 3600, IdToken: 300, Interaction: 600,
  },
  features: {
    clientCredentials: { enabled: true },
    // The development login and consent pages: any user name signs in (a test provider).
    devInteractions: { enabled: Boolean(web) },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => "urn:mmt:api",
      useGrantedResource: () => true,
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
