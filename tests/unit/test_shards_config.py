"""Shards: the two settings, their validation and masking, and the partition -> shard map."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka.partitioner import DefaultPartitioner

from ingest.cli.query_run import target_dsn
from ingest.config.docs import show_json
from ingest.config.fields import MASK
from ingest.config.load import load_settings
from ingest.errors import UserError
from ingest.wiring import pool_params, query_pool_params, shard_pool_params
from storage.errors import MigrationError
from storage.fdw import FETCH_SIZE, ShardLink
from storage.shards import kafka_partition, murmur2, shard_of, shard_of_key

pytestmark = pytest.mark.unit

A = "postgresql://nev@db-0:5432/nev"
B = "postgresql://nev:hunter2@db-1:5432/nev"


def _refusal(shards: str) -> str:
    """The refusal of NEV_STORAGE_SHARDS=``shards`` at load."""
    with pytest.raises(UserError) as refused:
        load_settings(environ={"NEV_STORAGE_SHARDS": shards})
    return str(refused.value)


def test_shards_come_comma_separated_from_the_environment() -> None:
    settings = load_settings(
        environ={"NEV_STORAGE_SHARDS": f"{A}, {B}", "NEV_STORAGE_QUERY_DSN": A + "_query"}
    )
    assert settings.storage.shards == (A, B)
    assert settings.storage.query_dsn == A + "_query"


def test_no_shards_by_default_means_the_one_database() -> None:
    settings = load_settings(environ={})
    assert settings.storage.shards == ()
    assert settings.storage.query_dsn == ""


def test_a_shard_password_is_masked_in_config_show() -> None:
    shown = show_json(load_settings(environ={"NEV_STORAGE_SHARDS": f"{A},{B}"}))
    assert "hunter2" not in shown
    assert MASK in shown


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NEV_STORAGE_SHARDS": f"{A},host=db password=secret"}, "storage.shards[1]: expected"),
        ({"NEV_STORAGE_SHARDS": f"{A},{A}"}, "listed twice"),
        ({"NEV_STORAGE_QUERY_DSN": "dbname=q"}, "storage.query_dsn: expected"),
        ({"NEV_STORAGE_SHARDS": f"{A},{B}", "NEV_STORAGE_QUERY_DSN": B}, "is also a shard"),
        ({"NEV_STORAGE_QUERY_DSN": "postgresql://nev@127.0.0.1:5432/nev"}, "is also a shard"),
        # libpq reads a # as part of a value, asyncpg as a fragment it drops
        ({"NEV_POSTGRES_DSN": "postgresql://u:se#cret@h/nev"}, "postgres.dsn: write a # "),
        ({"NEV_STORAGE_SHARDS": f"{A},{B}#secret"}, "storage.shards[1]: write a # "),
        ({"NEV_STORAGE_QUERY_DSN": "postgresql://h/q?options=#secret"}, "query_dsn: write a # "),
        ({"NEV_STORAGE_REPLICAS": "postgresql://r/nev#secret"}, "replicas[0]: write a # "),
    ],
)
def test_bad_shard_settings_say_what_to_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(UserError, match=message.replace("[", r"\[")) as info:
        load_settings(environ=env)
    assert "secret" not in str(info.value)


def test_partition_p_belongs_to_shard_p_mod_n() -> None:
    assert [shard_of(p, 2) for p in range(6)] == [0, 1, 0, 1, 0, 1]
    assert [shard_of(p, 3) for p in range(6)] == [0, 1, 2, 0, 1, 2]
    assert {shard_of(p, 0) for p in range(12)} == {0}  # no shards: the one database
    assert {shard_of(p, 1) for p in range(12)} == {0}
    with pytest.raises(ValueError, match="negative"):
        shard_of(-1, 2)


def test_murmur2_matches_kafkas_own_vectors() -> None:
    # org.apache.kafka.common.utils.UtilsTest.testMurmur2 (Java ints, signed)
    vectors = {
        "21": -973932308,
        "foobar": -790332482,
        "a-little-bit-long-string": -985981536,
        "a-little-bit-longer-string": -1486304829,
        "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        "abc": 479470107,
    }
    for key, expected in vectors.items():
        assert murmur2(key.encode()) == expected & 0xFFFFFFFF, key


def test_key_partition_agrees_with_the_producers_partitioner() -> None:
    # the producer (aiokafka) picks the partition of a keyed record; the query router must agree
    partitioner = DefaultPartitioner()
    partitions = list(range(12))
    for n in range(200):
        key = f"LNBSCU3H{n:09d}".encode()
        assert kafka_partition(key, 12) == partitioner(key, partitions, partitions)
        assert shard_of_key(key, 12, 2) == kafka_partition(key, 12) % 2


def test_each_shard_gets_the_postgres_credentials_and_tls() -> None:
    settings = load_settings(
        environ={
            "NEV_STORAGE_SHARDS": f"{A},{B}",
            "NEV_STORAGE_QUERY_DSN": A + "_query",
            "NEV_POSTGRES_PASSWORD": "pw",
            "NEV_POSTGRES_SSLMODE": "require",
        }
    )
    params = shard_pool_params(settings, "t")
    assert [p.dsn for p in params] == [A + "?sslmode=require", B + "?sslmode=require"]
    assert {p.password for p in params} == {"pw"}
    query = query_pool_params(settings, "t")
    assert query is not None
    assert (query.dsn, query.password) == (A + "_query?sslmode=require", "pw")


def test_without_shards_the_one_database_is_shard_zero() -> None:
    settings = load_settings(environ={})
    assert shard_pool_params(settings) == [pool_params(settings)]
    assert query_pool_params(settings) is None


def test_a_query_goes_to_its_entitys_shard_or_the_query_database() -> None:
    settings = load_settings(
        environ={"NEV_STORAGE_SHARDS": f"{A},{B}", "NEV_STORAGE_QUERY_DSN": A + "_query"}
    )
    for n in range(50):
        vin = f"LNBSCU3H{n:09d}"
        want = (A, B)[kafka_partition(vin.encode(), settings.kafka.partitions) % 2]
        assert target_dsn(settings, ("vehicle", vin)) == want
    assert target_dsn(settings, None) == A + "_query"  # fleet-wide: the union
    assert target_dsn(settings, ("vehicle", "X"), dsn_flag=True) == settings.postgres.dsn


def test_the_router_hashes_into_the_configured_partition_count() -> None:
    environ = {"NEV_STORAGE_SHARDS": f"{A},{B}"}
    # a key whose partition differs in parity between 12 and 7 partitions
    key = next(
        f"V{n:016d}"
        for n in range(1000)
        if kafka_partition(f"V{n:016d}".encode(), 12) % 2
        != kafka_partition(f"V{n:016d}".encode(), 7) % 2
    )
    twelve = target_dsn(load_settings(environ=environ), ("vehicle", key))
    seven = target_dsn(
        load_settings(environ={**environ, "NEV_KAFKA_PARTITIONS": "7"}), ("vehicle", key)
    )
    assert twelve != seven


def test_without_shards_every_query_reads_postgres_dsn() -> None:
    settings = load_settings(environ={})
    assert target_dsn(settings, ("vehicle", "LNBSCU3H000000001")) == settings.postgres.dsn
    assert target_dsn(settings, None) == settings.postgres.dsn


def test_a_fleet_query_over_shards_needs_the_query_database() -> None:
    settings = load_settings(environ={"NEV_STORAGE_SHARDS": f"{A},{B}"})
    with pytest.raises(UserError, match=r"set storage\.query_dsn"):
        target_dsn(settings, None)


def test_the_query_database_reaches_a_shard_with_the_postgres_credentials() -> None:
    link = ShardLink(B + "?sslmode=require&sslcert=/c.pem&sslkey=/k.pem", password="pw")
    assert link.server_options() == {
        "host": "db-1",
        "port": "5432",
        "dbname": "nev",
        "sslmode": "require",
        "async_capable": "true",
        "fetch_size": str(FETCH_SIZE),
    }
    # user, password and the client certificate belong to the user mapping (postgres_fdw)
    assert link.user_options() == {
        "user": "nev",
        "password": "pw",
        "sslcert": "/c.pem",
        "sslkey": "/k.pem",
    }
    assert ShardLink(B).user_options()["password"] == "hunter2"  # the URL's, if none is set


def test_a_bad_shard_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(MigrationError, match="not a valid libpq URL") as info:
        ShardLink("postgresql://nev:s3cret@db/nev?no_such_option=1").server_options()
    assert "s3cret" not in str(info.value)


def test_a_shard_with_a_replica_is_read_there_as_the_shards_user() -> None:
    link = ShardLink(
        "postgresql://nev:pw@primary:5432/nev?sslmode=require",
        replica="postgresql://other@standby:5433/nev?sslmode=verify-full",
    )
    read = link.read_options()
    assert (read["host"], read["port"], read["sslmode"]) == ("standby", "5433", "verify-full")
    assert "user" not in read and read["async_capable"] == "true"
    assert link.server_options()["host"] == "primary"  # what the import reads
    assert link.user_options() == {"user": "nev", "password": "pw"}  # the mapping: the shard's
    assert ShardLink("postgresql://db/nev").read_options()["host"] == "db"  # no replica
    with pytest.raises(MigrationError, match=r"fix storage\.replicas"):
        ShardLink("postgresql://db/nev", replica="postgresql://x/y?no_such_option=1").read_options()


def test_a_multi_host_url_stays_whole_in_a_comma_separated_list() -> None:
    # libpq and asyncpg take a host list in a URL, as postgres.dsn does: the list splits only
    # where the next URL begins.
    multi = "postgresql://nev@h1:5432,h2:5432/nev?target_session_attrs=read-write"
    settings = load_settings(
        environ={
            "NEV_STORAGE_SHARDS": f"{multi}, postgres://nev@h3,h4/nev,{B}",
            "NEV_STORAGE_REPLICAS": "postgresql://r@r1,r2/nev,postgresql://r@r3/nev,"
            "postgresql://r@r4/nev",
        }
    )
    assert settings.storage.shards == (multi, "postgres://nev@h3,h4/nev", B)
    assert settings.storage.replicas == (
        "postgresql://r@r1,r2/nev",
        "postgresql://r@r3/nev",
        "postgresql://r@r4/nev",
    )


def test_a_comma_in_a_urls_query_stays_in_that_url() -> None:
    # libpq's query-string multi-host form and a comma in an option's value: both load as
    # postgres.dsn, and were split in the list, refused as "storage.shards[1]", an entry the
    # user never wrote.
    hosts = "postgresql://nev@/nev?host=h1,h2&port=5432,5433"
    options = "postgresql://nev@h1/nev?options=-csearch_path%3Dnev,public"
    assert load_settings(environ={"NEV_POSTGRES_DSN": hosts}).postgres.dsn == hosts
    settings = load_settings(
        environ={
            "NEV_STORAGE_SHARDS": f"{hosts},{options}, postgres://nev@/nev?host=h3,h4,{B}",
            "NEV_STORAGE_REPLICAS": "postgresql://r@/nev?host=r1,r2&port=5432,5433,"
            "postgresql://r@r3/nev?options=-csearch_path%3Dnev,public,postgresql://r@r4/nev,"
            "postgresql://r@r5/nev",
        }
    )
    assert settings.storage.shards == (hosts, options, "postgres://nev@/nev?host=h3,h4", B)
    assert settings.storage.replicas == (
        "postgresql://r@/nev?host=r1,r2&port=5432,5433",
        "postgresql://r@r3/nev?options=-csearch_path%3Dnev,public",
        "postgresql://r@r4/nev",
        "postgresql://r@r5/nev",
    )


@pytest.mark.parametrize(
    "shards",
    [
        f"{A}?sslmode=require,host=db password=secret",  # after a query
        "postgresql://nev@h1,host=db password=secret",  # after a host list
        f"{A}?application_name=x, dbname=other",
    ],
)
def test_a_keyword_dsn_after_a_url_is_refused_not_joined_to_it(shards: str) -> None:
    # Joined, its password would have become part of the URL (an application_name or a host
    # name the logs show); as an item of its own it is refused as not a URL, nothing echoed.
    with pytest.raises(UserError, match=r"storage\.shards\[1\]: expected") as refused:
        load_settings(environ={"NEV_STORAGE_SHARDS": shards})
    assert "secret" not in str(refused.value)


@pytest.mark.parametrize(
    ("shards", "place"),
    [
        ("postgresql://nev@db0,nev:secret@db1:5433/nev", "db1:5433/nev"),
        (f"{A},nev:secret@db1/nev?sslmode=require", "db1/nev"),
        ("postgresql://nev@db0/nev,nev:se?cret@db1/nev", "db1/nev"),  # a ? ends the name
        ("postgresql://db0/nev,db1/nev", "db1/nev"),
    ],
)
def test_a_url_without_its_scheme_is_refused_not_joined_to_the_one_before(
    shards: str, place: str
) -> None:
    # The comma in a host list or the database name was read as part of the URL: the
    # mistyped second shard became a host (or the name) of the first one and the deployment
    # ran one shard. Now it is refused as an item of its own, saying what to add.
    said = _refusal(shards)
    assert f"storage.shards[1] ({place}): this URL has no scheme" in said, said
    assert "postgresql://" in said and "\n" not in said and "secret" not in said


@pytest.mark.parametrize(
    "shards",
    [
        "postgresql://nev@db0/nev?application_name=ingest,nev@db1/nev",
        # a base64 password (=), or one with & or ?, ends no query value: still refused
        "postgresql://nev@db0/nev?application_name=ingest,nev:c2VjcmV0==@db1/nev",
        "postgresql://nev@db0/nev?application_name=ingest,nev:sec&ret@db1/nev",
        "postgresql://nev@db0/nev?application_name=ingest,nev:sec?ret@db1/nev",
        "postgresql://nev@db0/nev?sslmode=require&application_name=ingest,ops@site",
        "postgresql://nev@db0/nev?host=h1,h2&application_name=a@secret",
    ],
)
def test_an_at_after_a_comma_in_a_query_is_refused(shards: str) -> None:
    # What follows a comma in a query up to the next comma holding an @ is a second URL
    # without its scheme (asyncpg connected to db0 only, the application_name swallowing the
    # second shard) or an @ in a value after a list: which one cannot be told, so the line says
    # how to write each.
    said = _refusal(shards)
    assert "storage.shards[0] (db0/nev): a comma in the query" in said, said
    assert "write postgresql:// before it" in said and "%2C" in said and "%40" in said
    assert "secret" not in said and "c2VjcmV0" not in said and "ret@" not in said


@pytest.mark.parametrize(
    ("shards", "place"),
    [
        ("postgresql://nev@db0/nev?application_name=ingest,db1/nev", "db0/nev"),
        (
            "postgresql://nev@db0/nev?application_name=ingest,db1:5433/nev?sslmode=require",
            "db0/nev",
        ),
        ("postgresql:///nev?host=/tmp,/var/run/postgresql,db1/nev", "/nev"),
        ("postgresql://nev@db0/nev?application_name=ingest, db1/nev", "db0/nev"),
        # a / in a value after a comma: which one it is cannot be told, so write it %2C
        ("postgresql://nev@db0/nev?application_name=ingest,v2/blue", "db0/nev"),
    ],
)
def test_a_slash_after_a_comma_in_a_query_is_refused(shards: str, place: str) -> None:
    # A second URL without its scheme and without a user has no @: it loaded as one shard,
    # the first one's application_name (or host list) swallowing the second database.
    said = _refusal(shards)
    assert f"storage.shards[0] ({place}): a comma in the query is followed by text with a /" in (
        said
    ), said
    assert "write postgresql:// before it" in said and "%2C" in said and "\n" not in said


@pytest.mark.parametrize(
    "shards",
    [
        "postgresql://nev:secret@db0/nev,x",
        # an unencoded @ in the password: the refusal named the hosts after the FIRST @ and
        # echoed the password's end ("(cr3t@db0/nev)")
        "postgresql://nev:Se@cr3t@db0/nev,x",
        "postgresql://nev:Se@cr3t@db0/nev?application_name=ingest,nev@db1/nev",
    ],
)
def test_a_refusal_names_the_url_by_its_hosts_not_its_password(shards: str) -> None:
    said = _refusal(shards)
    assert "storage.shards[0] (db0/nev): a comma in the " in said, said
    assert "%2C" in said and "secret" not in said and "cr3t" not in said


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p,ss@h1/db",
        "postgresql://u:p,ss@h1,h2/db",
        "postgresql://a,b@h/db",
        "postgresql://nev:a,b=c&d@h1:5432,h2:5433/nev?sslmode=require",
        "postgresql://nev:YWJjZA==@db1/nev",
        "postgres://u:p,ss@[::1]:5432,[::2]:5433/nev",
    ],
)
def test_a_comma_in_a_user_name_or_password_stays_in_its_url(url: str) -> None:
    # libpq reads the credentials up to the authority's first @: a comma there splits nothing
    # (the list split it, and refused the pieces with a message about a port or a scheme).
    shards = load_settings(environ={"NEV_STORAGE_SHARDS": f"{A},{url}"}).storage.shards
    assert shards == (A, url)
    replicas = load_settings(
        environ={"NEV_STORAGE_SHARDS": f"{A},{B}", "NEV_STORAGE_REPLICAS": f"{url}, {A}_r"}
    ).storage.replicas
    assert replicas == (url, f"{A}_r")


def test_commas_libpq_reads_inside_a_url_keep_it_whole() -> None:
    urls = (
        "postgresql://nev@[::1]:5432,[::2]:5433/nev",
        "postgresql:///nev?host=/tmp,/var/run/postgresql",
        "postgresql://nev@h1/nev?options=-csearch_path%3Dnev,public",
        "postgresql://nev@h1/nev?application_name=ingest%2Cv2/blue",
        "postgresql://nev@/nev?host=h1,h2&application_name=a%40b,c",
        "postgresql://nev@/nev?host=h1,h2&sslrootcert=/etc/ssl/ca.pem",  # a path after a &
        "postgresql://nev@db0/nev?application_name=a@b,c",  # the @ before the comma
    )
    settings = load_settings(environ={"NEV_STORAGE_SHARDS": ",".join(urls)})
    assert settings.storage.shards == urls


def test_an_upper_case_scheme_starts_a_url_and_is_refused() -> None:
    # libpq reads POSTGRESQL://... as a database name; read into the URL before it, the second
    # shard would have been part of its database name.
    with pytest.raises(UserError, match=r"storage\.shards\[1\]: write the URL's scheme in lower"):
        load_settings(environ={"NEV_STORAGE_SHARDS": f"{A}, POSTGRESQL://nev@db1/nev"})


def test_empty_items_and_unix_socket_lists_in_a_query() -> None:
    sockets = "postgresql:///nev?host=/tmp,/var/run/postgresql"
    at = "postgresql://nev@/nev?host=h1,h2&application_name=a%40b,c"  # an @ in a later value
    settings = load_settings(environ={"NEV_STORAGE_SHARDS": f"{sockets},,{at},{B},"})
    assert settings.storage.shards == (sockets, at, B)


@pytest.mark.parametrize(
    ("item", "said"),
    [
        ("postgresql://nev@db0,nev@db1/nev", "[1] (db1/nev): this URL has no scheme"),
        ("postgresql://nev@db0/nev?application_name=ingest,db1/nev", "a comma in the query"),
        ("postgresql://nev@db0/nev,x", "a comma in the database name"),
        ("postgresql://nev@db0/nev,postgresql://nev@db1/nev", "holds more than one URL"),
        ("postgresql://nev@db0/nev, host=db1 password=secret", "holds more than one URL"),
    ],
)
def test_an_item_of_a_toml_array_is_judged_as_one_url(tmp_path: Path, item: str, said: str) -> None:
    # An array item is not split, and its commas were not looked at: two URLs in one item
    # loaded as one shard (refused in NEV_STORAGE_SHARDS). Each is named by its own index.
    path = tmp_path / "nev.toml"
    for text in (
        f"shards = [{A!r}, {item!r}]",
        f"shards = [{A!r}, {B!r}]\nreplicas = [{A + '_r'!r}, {item!r}]",
    ):
        key = text.rpartition("\n")[2].partition(" ")[0]
        path.write_text(f"[storage]\n{text}\n")
        with pytest.raises(UserError) as refused:
            load_settings(config_file=path, environ={})
        line = str(refused.value)
        assert line.startswith(f"storage.{key}[1]") and said in line, line
        assert "secret" not in line and "\n" not in line


def test_an_item_of_a_toml_array_with_commas_libpq_reads_loads(tmp_path: Path) -> None:
    urls = [
        "postgresql://nev:p,ss@[::1]:5432,[::2]:5433/nev",
        "postgresql:///nev?host=/tmp,/var/run/postgresql",
    ]
    path = tmp_path / "nev.toml"
    path.write_text(f"[storage]\nshards = {urls!r}\n")
    assert load_settings(config_file=path, environ={}).storage.shards == tuple(urls)
