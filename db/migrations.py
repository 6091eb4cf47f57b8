"""The schema, as an ordered list of sqlite-utils migrations."""

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("oncelink")


@migrations()
def m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
            disabled INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL
        );
        CREATE TABLE api_keys (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            key_hash TEXT NOT NULL UNIQUE,
            prefix TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL,
            revoked_at REAL,
            last_used_at REAL
        );
        CREATE TABLE storages (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            config TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE links (
            id INTEGER PRIMARY KEY,
            token_hash TEXT NOT NULL UNIQUE,
            storage_id TEXT NOT NULL,
            path TEXT NOT NULL,
            decrypt INTEGER NOT NULL DEFAULT 1,
            created_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            max_uses INTEGER NOT NULL DEFAULT 1,
            uses INTEGER NOT NULL DEFAULT 0,
            revoked_at REAL,
            last_used_at REAL,
            lease_id TEXT,
            lease_until REAL
        );
        CREATE INDEX links_expires_at ON links(expires_at);
        CREATE INDEX links_lease_id ON links(lease_id);
        CREATE TABLE link_events (
            id INTEGER PRIMARY KEY,
            link_id INTEGER,
            storage_id TEXT,
            path TEXT,
            event TEXT NOT NULL,
            bytes INTEGER,
            reason TEXT,
            at REAL NOT NULL,
            client_ip TEXT,
            user_agent TEXT
        );
        CREATE INDEX link_events_link_id ON link_events(link_id);
        """
    )


@migrations()
def m002_encryption_profiles(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE encryption_profiles (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            wrapped_key BLOB NOT NULL,
            created_at REAL NOT NULL
        );
        """
    )


@migrations()
def m003_link_bytes_sent(db: Database) -> None:
    """Bytes handed out by every transfer of a link, finished or not: the budget partial ranges draw on."""
    db.execute("ALTER TABLE links ADD COLUMN bytes_sent INTEGER NOT NULL DEFAULT 0")


@migrations()
def m004_link_ids_never_reused(db: Database) -> None:
    """Events outlive purged links and name them by id: a new link must never get an old one's id."""
    db.executescript(
        """
        CREATE TABLE links_new (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            token_hash TEXT NOT NULL UNIQUE,
            storage_id TEXT NOT NULL,
            path TEXT NOT NULL,
            decrypt INTEGER NOT NULL DEFAULT 1,
            created_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            max_uses INTEGER NOT NULL DEFAULT 1,
            uses INTEGER NOT NULL DEFAULT 0,
            revoked_at REAL,
            last_used_at REAL,
            lease_id TEXT,
            lease_until REAL,
            bytes_sent INTEGER NOT NULL DEFAULT 0
        );
        INSERT INTO links_new SELECT id, token_hash, storage_id, path, decrypt, created_by, created_at,
            expires_at, max_uses, uses, revoked_at, last_used_at, lease_id, lease_until, bytes_sent
            FROM links;
        DROP TABLE links;
        ALTER TABLE links_new RENAME TO links;
        CREATE INDEX links_expires_at ON links(expires_at);
        CREATE INDEX links_lease_id ON links(lease_id);
        DELETE FROM sqlite_sequence WHERE name = 'links';
        INSERT INTO sqlite_sequence (name, seq) SELECT 'links', MAX(
            COALESCE((SELECT MAX(id) FROM links), 0), COALESCE((SELECT MAX(link_id) FROM link_events), 0));
        """
    )


@migrations()
def m005_claims(db: Database) -> None:
    """One claim per running transfer, each with its own lease, instead of one lease per link.

    `counts` marks a transfer whose range reaches the end of the file (delivering it is a use);
    `state` becomes 'final' just before such a transfer sends its last piece, after which the
    claim is never given back (see db/claims.py).
    """
    db.executescript(
        """
        CREATE TABLE claims (
            id TEXT PRIMARY KEY,
            link_id INTEGER NOT NULL REFERENCES links(id) ON DELETE CASCADE,
            state TEXT NOT NULL DEFAULT 'sending' CHECK (state IN ('sending', 'final')),
            counts INTEGER NOT NULL,
            length INTEGER NOT NULL,
            started_at REAL NOT NULL,
            lease_until REAL NOT NULL
        );
        CREATE INDEX claims_link_id ON claims(link_id);
        DROP INDEX links_lease_id;
        ALTER TABLE links DROP COLUMN lease_id;
        ALTER TABLE links DROP COLUMN lease_until;
        """
    )


@migrations()
def m006_event_repeats(db: Database) -> None:
    """HEADs, previews and refusals repeated within a minute bump one row instead of adding rows.

    The index finds that row without scanning every event of the link (or of every unknown token).
    """
    db.executescript(
        """
        ALTER TABLE link_events ADD COLUMN repeats INTEGER NOT NULL DEFAULT 1;
        CREATE INDEX link_events_recent ON link_events(link_id, event, client_ip, at);
        """
    )


@migrations()
def m007_session_epoch(db: Database) -> None:
    """A number every session cookie carries: bumping it ends every session signed in before.

    Sign-out, a new password and a change of role or access bump it (core/accounts.py).
    """
    db.execute("ALTER TABLE users ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0")


@migrations()
def m008_attempts(db: Database) -> None:
    """Attempts that may fail (a token tried, a password typed), one row each until its window has
    passed, in the database so that every worker of an install counts them together."""
    db.executescript(
        """
        CREATE TABLE attempts (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL,
            expires_at REAL NOT NULL
        );
        CREATE INDEX attempts_key ON attempts(key, expires_at);
        CREATE INDEX attempts_expires_at ON attempts(expires_at);
        """
    )


@migrations()
def m009_purge_and_history_indexes(db: Database) -> None:
    """Indexes that keep a year of links cheap: the purge finds links revoked or used up long ago
    (expired ones: links_expires_at) and old events without reading every row, and the links page
    finds one user's newest links without reading everyone's."""
    db.executescript(
        """
        CREATE INDEX links_revoked_at ON links(revoked_at) WHERE revoked_at IS NOT NULL;
        CREATE INDEX links_used_up ON links(last_used_at) WHERE uses >= max_uses;
        CREATE INDEX links_created_by ON links(created_by);
        CREATE INDEX link_events_at ON link_events(at);
        """
    )


@migrations()
def m011_readable_history(db: Database) -> None:
    """What a person needs to read a link's history: how each link and transfer delivered the file
    (`mode`: decrypted, stored or redirect), where a transfer's range started (`start`: a resume's
    offset, which `started` events used to keep in `bytes`) and how long it ran (`seconds`).

    Links minted before knew only whether decrypting was asked for, not whether the file was
    encrypted: such a link to a `.enc` file is taken as decrypted, any other as stored.
    """
    db.executescript(
        """
        ALTER TABLE links ADD COLUMN mode TEXT;
        ALTER TABLE link_events ADD COLUMN mode TEXT;
        ALTER TABLE link_events ADD COLUMN start INTEGER;
        ALTER TABLE link_events ADD COLUMN seconds REAL;
        UPDATE links SET mode = CASE WHEN decrypt AND path LIKE '%.enc' THEN 'decrypted' ELSE 'stored' END;
        UPDATE link_events SET start = bytes, bytes = NULL WHERE event = 'started';
        """
    )


@migrations()
def m014_digests(db: Database) -> None:
    """SHA-256 digests of what links deliver (core/digests.py).

    `digests`: one per storage file and delivery mode, valid only for the `size` and `version` (the
    storage's word for exactly those bytes: inode and ctime locally, ETag and VersionId on S3) it was
    computed for. `plaintext_digests`: an encrypted file's plaintext digest by the file's random salt,
    recorded by `flask encrypt` or once decrypted, wherever the file is later copied. `digest_jobs`:
    the computations running, with their progress, seen by every worker.
    """
    db.executescript(
        """
        CREATE TABLE digests (
            storage_id TEXT NOT NULL REFERENCES storages(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            mode TEXT NOT NULL,
            size INTEGER NOT NULL,
            version TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            source TEXT NOT NULL,
            computed_at REAL NOT NULL,
            PRIMARY KEY (storage_id, path, mode)
        );
        CREATE TABLE plaintext_digests (
            salt TEXT PRIMARY KEY,
            key_id TEXT NOT NULL,
            size INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            source TEXT NOT NULL,
            recorded_at REAL NOT NULL
        );
        CREATE TABLE digest_jobs (
            storage_id TEXT NOT NULL REFERENCES storages(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            mode TEXT NOT NULL,
            done INTEGER NOT NULL DEFAULT 0,
            total INTEGER NOT NULL,
            heartbeat_at REAL NOT NULL,
            error TEXT,
            PRIMARY KEY (storage_id, path, mode)
        );
        """
    )


@migrations()
def m015_notifications(db: Database) -> None:
    """Who hears of a link's use (`notify_targets`: a webhook each, its URL and signing secret
    sealed by the master key) and the queue of what is to be told (`notifications`: one row per
    target and event, written in the transaction that records the event, so no restart loses one).

    A row is `pending` until a sender claims it (`sending`, until `claimed_until`: a sender that
    died leaves it to another once that passes), then `sent`, or `pending` again for a retry at
    `next_at`, or `failed` for good.
    """
    db.executescript(
        """
        CREATE TABLE notify_targets (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            kind TEXT NOT NULL DEFAULT 'webhook',
            url TEXT NOT NULL,
            url_hint TEXT NOT NULL,
            secret TEXT NOT NULL,
            events TEXT NOT NULL DEFAULT '[]',
            enabled INTEGER NOT NULL DEFAULT 1,
            created_at REAL NOT NULL
        );
        CREATE TABLE notifications (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            message_id TEXT NOT NULL UNIQUE,
            target_id TEXT NOT NULL REFERENCES notify_targets(id) ON DELETE CASCADE,
            notice TEXT NOT NULL,
            link_id INTEGER,
            payload TEXT NOT NULL,
            created_at REAL NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sending', 'sent', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL,
            claimed_by TEXT,
            claimed_until REAL,
            last_status INTEGER,
            last_error TEXT,
            done_at REAL
        );
        CREATE INDEX notifications_due ON notifications(next_at) WHERE state = 'pending';
        CREATE INDEX notifications_claimed ON notifications(claimed_until) WHERE state = 'sending';
        CREATE INDEX notifications_target ON notifications(target_id, id);
        CREATE INDEX notifications_done ON notifications(done_at) WHERE done_at IS NOT NULL;
        """
    )


@migrations()
def m016_health_probe(db: Database) -> None:
    """One row that /healthz rewrites to prove the database takes a write (core/health.py)."""
    db.executescript("CREATE TABLE health_probe (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL);")


@migrations()
def m017_dbackup_profiles(db: Database) -> None:
    """A profile imported from DBackup keeps the id that DBackup's sidecars name (`profileId`);
    Oncelink's own profiles have none, so the index is partial and any number of NULLs stay allowed."""
    db.executescript(
        """
        ALTER TABLE encryption_profiles ADD COLUMN dbackup_id TEXT;
        CREATE UNIQUE INDEX encryption_profiles_dbackup_id ON encryption_profiles(dbackup_id)
            WHERE dbackup_id IS NOT NULL;
        """
    )


@migrations()
def m018_tag_verdicts(db: Database) -> None:
    """Whether a DBackup backup's whole-file tag was found good, by the identity of the bytes checked
    (core/tag_checks.py): a resume, on any worker, does not read the whole file again."""
    db.executescript(
        """
        CREATE TABLE tag_verdicts (
            identity TEXT PRIMARY KEY,
            intact INTEGER NOT NULL,
            checked_at REAL NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX tag_verdicts_checked ON tag_verdicts(checked_at);
        """
    )


@migrations()
def m019_links_sent_etag(db: Database) -> None:
    """The ETag of what a link's latest transfer started sending: a resume without If-Range (wget -c,
    curl -C -) of a file rewritten since is refused rather than spliced (core/downloads.py)."""
    db.executescript("ALTER TABLE links ADD COLUMN sent_etag TEXT;")
