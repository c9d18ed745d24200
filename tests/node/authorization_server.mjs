// A real OAuth 2.1 authorization server for the tests: panva's oidc-provider on 127.0.0.1, issuing RFC 9068 JWT
// access tokens for whichever resource a client names (RFC 8707), by client credentials or by authorization code
// with PKCE. The browser's part (login, consent) is scripted: every interaction logs in ACCOUNT and grants what
// was asked. Clients register themselves (RFC 7591), as MCP clients do, or are the fixed ones below.
//
// Prints one JSON line, {"issuer": ...}, once it listens; it stops when its stdin closes.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

const ACCOUNT = process.env.ACCOUNT || 'alice';
const SECRET = process.env.CLIENT_SECRET || 'a-client-secret-for-tests-only';
const SCOPES = 'flashsnap:read flashsnap:write flashsnap:spend flashsnap:admin';

function key(type, options, alg) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid: `${alg}-${randomUUID()}`, alg, use: 'sig' };
}

// Fixed clients, each showing one shape of token: the usual one, and the shapes other servers issue or forge.
const machine = (client_id) => ({
  client_id,
  client_secret: SECRET,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  scope: SCOPES,
});
const clients = [
  machine('machine'), // at+jwt, RS256: RFC 9068 as written
  machine('machine-es256'), // at+jwt, ES256
  machine('plain-jwt'), // typ JWT with client_id and scope: what Keycloak and Entra issue
  machine('plain-jwt-nonce'), // typ JWT carrying a nonce: an ID token's shape
  machine('plain-jwt-no-client'), // typ JWT without client_id: not an access token's shape
  machine('other-issuer'), // signed by this server's key, naming another issuer
];

const customize = {
  'plain-jwt': (jwt) => { jwt.header = { typ: 'JWT' }; },
  'plain-jwt-nonce': (jwt) => { jwt.header = { typ: 'JWT' }; jwt.payload.nonce = 'n-0S6_WzA2Mj'; },
  'plain-jwt-no-client': (jwt) => { jwt.header = { typ: 'JWT' }; delete jwt.payload.client_id; },
  'other-issuer': (jwt) => { jwt.payload.iss = 'http://127.0.0.1:1/another-issuer'; },
};

const server = createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients,
  jwks: {
    keys: [
      key('rsa', { modulusLength: 2048 }, 'RS256'),
      key('ec', { namedCurve: 'P-256' }, 'ES256'),
    ],
  },
  scopes: ['openid', 'offline_access', ...SCOPES.split(' ')],
  claims: { openid: ['sub'], groups: ['groups'] },
  async findAccount(_ctx, sub) {
    return { accountId: sub, claims: async () => ({ sub, groups: ['writers'] }) };
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    registration: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // A client that names no resource gets a token for the one resource it asked for at authorization.
      defaultResource: async (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resource) => ({
        scope: SCOPES,
        audience: resource,
        accessTokenTTL: 600,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: ctx.oidc.client?.clientId === 'machine-es256' ? 'ES256' : 'RS256' } },
      }),
    },
  },
  formats: {
    customizers: {
      async jwt(ctx, _token, jwt) {
        customize[ctx.oidc.client?.clientId]?.(jwt);
        return jwt;
      },
    },
  },
  ttl: { AccessToken: 600, ClientCredentials: 600, IdToken: 600, Interaction: 600, Session: 600, Grant: 600 },
});
provider.proxy = false;
provider.on('server_error', (_ctx, err) => console.error('server_error', err));

// The scripted user: logs in as ACCOUNT and consents to everything asked, then sends the browser on.
provider.use(async (ctx, next) => {
  const match = ctx.path.match(/^\/interaction\/([^/]+)$/);
  if (!match) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  let result;
  if (details.prompt.name === 'login') {
    result = { login: { accountId: ACCOUNT } };
  } else {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    const missing = details.prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  }
  const to = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
  ctx.status = 303;
  ctx.redirect(to);
});

server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ issuer })}\n`);
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
