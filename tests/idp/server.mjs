// A real OpenID provider (panva's oidc-provider) for GeoGate's tests; driven by tests/oidc_idp.py.
//
// Usage: node tests/idp/server.mjs CONFIG.json
// CONFIG.json: {port, issuer, audience, jwks (private JWK set), clients, accounts, cookie_keys}.
// Prints READY on stdout once it listens on 127.0.0.1:port; exits on SIGTERM/SIGINT or when
// stdin closes (so a killed test run leaves no provider behind).
// Everything else (errors of the provider) goes to stderr, which the harness shows on failure.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

// oidc-provider prints "you SHOULD/MUST change this default" notices meant for production setups;
// drop them, and keep stdout for the READY line alone.
const toStderr = console.error.bind(console);
console.log = console.info = console.warn = (first, ...rest) => {
  if (typeof first === 'string' && first.startsWith('oidc-provider ')) return;
  toStderr(first, ...rest);
};

// Imported only now, so that the notices printed while it loads are dropped too.
const { default: Provider, errors } = await import('oidc-provider');

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const { audience } = config;
const accounts = config.accounts ?? {};

// Resource indicators that select the signing alg of a JWT access token; all carry `aud: audience`.
const RESOURCE_PREFIX = 'urn:geogate:';
const TOKEN_ALGS = new Set(['RS256', 'PS256', 'ES256', 'EdDSA']);

function accountClaims(accountId) {
  const account = accounts[accountId] ?? {};
  return { sub: accountId, email: account.email ?? accountId, groups: account.groups ?? [] };
}

// Claims a machine principal (one registered client) puts in its client-credentials tokens.
function clientClaims(client) {
  const claims = {};
  if (client.email !== undefined) claims.email = client.email;
  if (client.groups !== undefined) claims.groups = client.groups;
  if (client.nested_groups !== undefined) claims.realm_access = { roles: client.nested_groups };
  return claims;
}

function isStringList(value) {
  return Array.isArray(value) && value.every((item) => typeof item === 'string');
}

function validateExtraMetadata(ctx, key, value) {
  if (value === undefined) return;
  const ok = {
    email: () => typeof value === 'string',
    groups: () => typeof value === 'string' || isStringList(value),
    nested_groups: () => isStringList(value),
    token_ttl: () => Number.isInteger(value) && value > 0,
  }[key]();
  if (!ok) throw new errors.InvalidClientMetadata(`invalid ${key} value`);
}

function tokenTtl(fallback) {
  return (ctx, token, client) => client?.token_ttl ?? token.resourceServer?.accessTokenTTL ?? fallback;
}

const provider = new Provider(config.issuer, {
  jwks: config.jwks,
  clients: config.clients ?? [],
  cookies: { keys: config.cookie_keys },
  clientBasedCORS: () => false,
  pkce: { required: () => true },
  claims: { openid: ['sub'], email: ['email'], groups: ['groups'] },
  conformIdTokenClaims: false,
  async findAccount(ctx, sub) {
    return { accountId: sub, claims: async () => accountClaims(sub) };
  },
  extraClientMetadata: {
    properties: ['email', 'groups', 'nested_groups', 'token_ttl'],
    validator: validateExtraMetadata,
  },
  async extraTokenClaims(ctx, token) {
    if (token.kind === 'ClientCredentials') {
      return clientClaims(ctx.oidc.client);
    }
    if (token.kind === 'AccessToken' && token.accountId) {
      const { email, groups } = accountClaims(token.accountId);
      return { email, groups };
    }
    return undefined;
  },
  async issueRefreshToken(ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  ttl: {
    AccessToken: tokenTtl(60 * 60),
    ClientCredentials: tokenTtl(10 * 60),
    AuthorizationCode: 60,
    DeviceCode: 10 * 60,
    IdToken: 60 * 60,
    RefreshToken: 14 * 24 * 60 * 60,
    Interaction: 60 * 60,
    Session: 14 * 24 * 60 * 60,
    Grant: 14 * 24 * 60 * 60,
  },
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    clientCredentials: { enabled: true },
    registration: { enabled: true, initialAccessToken: false },
    resourceIndicators: {
      enabled: true,
      async defaultResource(ctx, client, oneOf) {
        return oneOf ?? `${RESOURCE_PREFIX}RS256`;
      },
      // Users' access tokens are JWTs for GeoGate (not opaque userinfo tokens), as most IdPs do.
      useGrantedResource: async () => true,
      async getResourceServerInfo(ctx, resourceIndicator) {
        const alg = resourceIndicator.startsWith(RESOURCE_PREFIX)
          ? resourceIndicator.slice(RESOURCE_PREFIX.length)
          : undefined;
        if (!TOKEN_ALGS.has(alg)) throw new errors.InvalidTarget();
        return { scope: 'api', audience, accessTokenFormat: 'jwt', jwt: { sign: { alg } } };
      },
    },
  },
});

provider.on('server_error', (ctx, error) => console.error('server_error', error));

const server = createServer(provider.callback());
server.listen(config.port, '127.0.0.1', () => process.stdout.write('READY\n'));

function shutdown() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
// The harness holds our stdin open; when it dies without stopping us, stdin ends and so do we.
process.stdin.on('end', shutdown);
process.stdin.resume();
