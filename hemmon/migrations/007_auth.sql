-- Sign-in and access that follows the roster (issue 15).

-- The identity a clinician signs in with at the region's identity provider (her HSA-id),
-- the role she has in hemmon, her mobile team if she works in one, and when a loaded
-- roster stopped listing her: from then on she has no access and her sessions end.
ALTER TABLE clinicians ADD COLUMN hsa_id text UNIQUE;
ALTER TABLE clinicians ADD COLUMN role text NOT NULL DEFAULT 'nurse'
    CHECK (role IN ('nurse', 'mobile_team', 'admin'));
ALTER TABLE clinicians ADD COLUMN team_id text REFERENCES teams;
ALTER TABLE clinicians ADD COLUMN removed_at timestamptz;

-- Every service token `hemmon token create` prints; a token whose row is missing,
-- revoked or expired is refused whatever its signature says.
CREATE TABLE service_tokens (
    id         text PRIMARY KEY,
    user_id    text NOT NULL,
    role       text NOT NULL CHECK (role IN ('nurse', 'mobile_team', 'admin')),
    team_id    text,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);

-- Browser sessions; the cookie holds a random value, only its SHA-256 is stored. The
-- scope at sign-in is kept so that a roster change that moves her ends the session.
CREATE TABLE sessions (
    id_hash      text PRIMARY KEY,
    clinician_id text NOT NULL,
    role         text NOT NULL,
    unit_id      text NOT NULL,
    team_id      text,
    via          text NOT NULL,
    signed_in_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz,
    end_reason   text
);
CREATE INDEX sessions_clinician ON sessions (clinician_id) WHERE ended_at IS NULL;

-- One-time sign-in codes (the demo, and sites without an identity provider yet).
CREATE TABLE login_codes (
    code_hash    text PRIMARY KEY,
    clinician_id text NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz
);

-- An OpenID Connect sign-in under way: state, nonce and PKCE verifier until the callback.
CREATE TABLE login_requests (
    state         text PRIMARY KEY,
    nonce         text NOT NULL,
    code_verifier text NOT NULL,
    created_at    timestamptz NOT NULL
);
