"""Everything a gateway worker builds once at start and shares across calls."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from geogate.agent import Executor, LocalExecutor
from geogate.config import Config, Connection, Credentials, Target
from geogate.dlp import BUILTIN_ENTITIES, Engine, Masker
from geogate.dlp.plan import MaskPlan, compile_masking, load_key
from geogate.dlp.vault import Vaults
from geogate.gateway.routing import Router
from geogate.gateway.trail import RefusalTrail
from geogate.identity import ApiKeyAuthenticator, Authenticator, DirectoryWatch, TokenVerifier
from geogate.policy import CompiledPolicy, compile_policy
from geogate.protocols import GoogleTokenSource, SigV4Signer
from geogate.recording import Recorder
from geogate.residency import (
    DestinationCheck,
    address_ranges_path,
    catalog_for,
    load_address_book,
)
from geogate.reviews import Notifier, Reviews, Wakeups
from geogate.store import Store, open_store


def credential_headers(credentials: Credentials | None) -> list[tuple[str, str]]:
    """The headers that authenticate the gateway to a target, computed once per target."""
    if credentials is None:
        return []
    if credentials.bearer is not None:
        return [("Authorization", f"Bearer {credentials.bearer}")]
    if credentials.header is not None:
        return list(credentials.header.items())
    return []  # aws: signed per request by the bedrock adapter, which refuses until it exists


def _signer(connection: Connection, target: Target) -> SigV4Signer | None:
    """Bedrock targets with `credentials: {aws: ...}` sign each request for their region."""
    aws = target.credentials.aws if target.credentials is not None else None
    if connection.type != "bedrock" or aws is None or target.region is None:
        return None
    return SigV4Signer(aws, target.region.partition(":")[2])


def _masks(config: Config) -> bool:
    return any(policy.mask is not None for policy in config.policies)


def _preview_engine(config: Config) -> Engine | None:
    """What review summaries are masked with: every entity, built in and custom."""
    if not any(policy.review is not None for policy in config.policies):
        return None
    custom = config.masking.custom
    return Engine.build(frozenset(BUILTIN_ENTITIES) | frozenset(custom), custom)


@dataclass(frozen=True)
class Runtime:
    config: Config
    policy: CompiledPolicy
    store: Store
    authenticator: Authenticator
    directory: DirectoryWatch
    tokens: TokenVerifier
    trail: RefusalTrail
    executor: Executor
    targets: dict[str, tuple[Target, ...]]
    """Per connection, its targets (`Connection.deployments`, built once here)."""
    credentials: dict[str, list[list[tuple[str, str]]]]
    """Per connection, the credential headers of each of its targets."""
    signers: dict[str, list[SigV4Signer | None]]
    """Per connection, the request signer of each target that signs (Bedrock with AWS keys)."""
    tokens_for: dict[str, GoogleTokenSource]
    """Per Vertex connection with a service account, where its access tokens come from."""
    router: Router
    masking: dict[str, MaskPlan]
    """Per policy with a `mask` block, what its calls mask and how."""
    vaults: Vaults
    """The `tokenize` style's per-session vaults."""
    recorder: Recorder
    """Writes every call's record before it is forwarded."""
    reviews: Reviews
    """Holds or refuses calls under a policy's `review` until people approve them."""
    preview: Engine | None
    """Masks the call summaries approvers are shown (None when no policy reviews)."""

    def preview_masker(self) -> Masker | None:
        return None if self.preview is None else Masker(self.preview, "redact")

    @classmethod
    async def start(cls, config: Config) -> Runtime:
        catalog = catalog_for(config.regions, config.jurisdictions)
        gateway = config.gateway
        addresses = await asyncio.to_thread(
            load_address_book, address_ranges_path(gateway.state, gateway.audit_key)
        )
        key = await asyncio.to_thread(load_key, config.masking.key) if _masks(config) else b""
        masking = await asyncio.to_thread(compile_masking, config, key)
        store = await open_store(config.gateway.state)
        directory = DirectoryWatch(store)
        tokens = TokenVerifier(config.identity.oidc)
        trail = RefusalTrail(store)
        preview = await asyncio.to_thread(_preview_engine, config)
        recorder: Recorder | None = None
        reviews: Reviews | None = None
        try:
            recorder = await Recorder.start(gateway, store.recorded)
            reviews = Reviews(
                store.reviews,
                Wakeups(store.folder),
                Notifier(config.reviews.notify),
                recorder.append,
                base_url=gateway.own_url,
                max_open=config.reviews.max_open,
            )
            await reviews.start()
            await directory.start()
            await tokens.start()
            trail.start()
            return cls(
                config=config,
                policy=compile_policy(config, catalog),
                store=store,
                authenticator=Authenticator(ApiKeyAuthenticator(store), tokens, directory),
                directory=directory,
                tokens=tokens,
                trail=trail,
                executor=LocalExecutor(gateway.resolve, DestinationCheck(catalog, addresses)),
                targets={
                    name: connection.deployments for name, connection in config.connections.items()
                },
                credentials={
                    name: [
                        credential_headers(target.credentials) for target in connection.deployments
                    ]
                    for name, connection in config.connections.items()
                },
                router=Router(),
                signers={
                    name: [_signer(connection, target) for target in connection.deployments]
                    for name, connection in config.connections.items()
                },
                tokens_for={
                    name: GoogleTokenSource(connection.credentials.google)
                    for name, connection in config.connections.items()
                    if connection.credentials is not None and connection.credentials.google
                },
                masking=masking,
                vaults=Vaults(key),
                recorder=recorder,
                reviews=reviews,
                preview=preview,
            )
        except BaseException:
            if reviews is not None:
                await reviews.close()
            if recorder is not None:
                await recorder.close()
            await trail.close()
            await directory.close()
            await tokens.close()
            await store.close()
            raise

    async def close(self) -> None:
        await self.executor.close()
        for source in self.tokens_for.values():
            await source.close()
        await self.reviews.close()
        await self.recorder.close()
        await self.trail.close()
        await self.directory.close()
        await self.tokens.close()
        await self.store.close()
