// A real OpenID Connect provider for hemmon's tests: panva's certified oidc-provider with
// a plain login form (any listed account, no password) standing in for SITHS eID.
//
//   node provider.mjs CONFIG.json
//
// CONFIG: {"port": 9000, "clients": [{client_id, client_secret, redirect_uris}],
//          "accounts": {"anna": {"hsa_id": "SE...-1234", "name": "Anna Berg"}},
//          "audience": "hemmon-api", "access_token_ttl": 600}
// Listens on 127.0.0.1 only; prints "ready <issuer>" when it answers.
import { readFileSync } from 'node:fs';
import { generateKeyPair, exportJWK } from 'jose';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `http://127.0.0.1:${config.port}`;
const accounts = config.accounts;

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const signing = { ...(await exportJWK(privateKey)), kid: `test-${config.port}`, alg: 'RS256', use: 'sig' };

function account(id) {
  if (!Object.hasOwn(accounts, id)) return undefined;
  return { accountId: id, claims: async () => ({ sub: id, ...accounts[id] }) };
}

const provider = new Provider(issuer, {
  clients: config.clients.map((c) => ({
    grant_types: ['authorization_code'], response_types: ['code'], ...c })),
  jwks: { keys: [signing] },
  findAccount: async (_ctx, id) => account(id),
  claims: { openid: ['sub', 'hsa_id', 'name'] },
  conformIdTokenClaims: false, // the ID token carries hsa_id itself
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => config.audience,
      useGrantedResource: async () => true,
      getResourceServerInfo: async () => ({
        scope: 'openid', audience: config.audience, accessTokenFormat: 'jwt',
        accessTokenTTL: config.access_token_ttl ?? 600,
      }),
    },
  },
  // the API reads the clinician from the access token too
  extraTokenClaims: async (_ctx, token) => {
    const found = accounts[token.accountId];
    return found ? { hsa_id: found.hsa_id } : undefined;
  },
  // first-party client: no consent screen
  loadExistingGrant: async (ctx) => {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid');
    grant.addOIDCClaims(['hsa_id', 'name']);
    grant.addResourceScope(config.audience, 'openid');
    await grant.save();
    return grant;
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: ['hemmon-oidc-test'] },
});

function page(title, body) {
  return `<!doctype html><html lang="sv"><head><meta charset="utf-8"><title>${title}</title>`
    + `</head><body><h1>${title}</h1>${body}</body></html>`;
}

async function interaction(req, res, uid) {
  const details = await provider.interactionDetails(req, res);
  if (req.method === 'GET') {
    res.setHeader('Content-Type', 'text/html; charset=utf-8');
    res.end(page('Testleverantör: logga in', `<form method="post" action="/interaction/${uid}">`
      + '<input name="login" autofocus><button type="submit">Logga in</button></form>'));
    return;
  }
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const login = new URLSearchParams(Buffer.concat(chunks).toString()).get('login') ?? '';
  if (details.prompt.name !== 'login' || !account(login)) {
    await provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'unknown account' });
    return;
  }
  await provider.interactionFinished(req, res, { login: { accountId: login } },
    { mergeWithLastSubmission: false });
}

const callback = provider.callback();
const server = (await import('node:http')).createServer((req, res) => {
  const found = /^\/interaction\/([\w-]+)$/.exec(req.url);
  if (found) {
    interaction(req, res, found[1]).catch((err) => {
      res.statusCode = 500;
      res.end(String(err));
    });
    return;
  }
  callback(req, res);
});
server.listen(config.port, '127.0.0.1', () => console.log(`ready ${issuer}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
