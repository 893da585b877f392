"""Azure Container Registry and the two workload images, built from this repository by Pulumi."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_docker as docker
from pulumi_azure_native import authorization, containerregistry

from infra.acr_token import ACR_TOKEN_USERNAME, TokenExchanger, exchange_token
from infra.network import PrivateNetwork

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGES = ("scorer", "submitter")


@dataclass
class RegistryArgs:
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    registry_name: str
    sku: str = "Standard"
    # privateNetwork with a Premium registry: default deny except these CIDRs (whoever runs `pulumi up` pushes the
    # images from there) and a private endpoint for the pool and the submitter. ACR's firewall and private endpoints
    # exist in Premium only ("Azure Container Registry service tiers", learn.microsoft.com/azure/container-registry/
    # container-registry-skus); Basic and Standard stay reachable from any network, Entra ID tokens still required.
    network: PrivateNetwork | None = None
    allowed_ip_ranges: tuple[str, ...] = ()
    image_tag: str = "latest"
    base_image: str = "python:3.11-slim"
    token_exchanger: TokenExchanger = exchange_token  # tests pass a fake: no network in tests
    tags: dict[str, str] = field(default_factory=dict)


class Registry(pulumi.ComponentResource):
    """ACR with the admin user off; images pushed with an exchanged Entra ID token."""

    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchscoring:infra:Registry", name, None, opts)
        private = args.network is not None and args.sku == "Premium"
        self.registry = containerregistry.Registry(
            f"{name}-acr",
            registry_name=args.registry_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            sku=containerregistry.SkuArgs(name=args.sku),
            # Premium replicates across the region's availability zones at no extra charge; set at creation only.
            zone_redundancy=containerregistry.ZoneRedundancy.ENABLED if args.sku == "Premium" else None,
            admin_user_enabled=False,
            anonymous_pull_enabled=False,
            network_rule_set=containerregistry.NetworkRuleSetArgs(
                default_action=containerregistry.DefaultAction.DENY,
                ip_rules=[
                    containerregistry.IPRuleArgs(i_p_address_or_range=cidr, action=containerregistry.Action.ALLOW)
                    for cidr in args.allowed_ip_ranges
                ],
            )
            if private
            else None,
            network_rule_bypass_options=containerregistry.NetworkRuleBypassOptions.AZURE_SERVICES if private else None,
            tags={**args.tags, "component": "registry"},
            opts=pulumi.ResourceOptions(parent=self),
        )
        if private and args.network:
            args.network.private_endpoint("registry", self.registry.id, "registry", parent=self.registry)
        self.login_server = self.registry.login_server
        tenant = authorization.get_client_config_output().tenant_id
        token = authorization.get_client_token_output().token
        exchanged: pulumi.Output[str] = pulumi.Output.all(self.login_server, tenant, token).apply(
            lambda a: args.token_exchanger(a[0], a[1], a[2])
        )
        password: pulumi.Output[str] = pulumi.Output.secret(exchanged)
        credentials = docker.RegistryArgs(server=self.login_server, username=ACR_TOKEN_USERNAME, password=password)
        self.images: dict[str, docker.Image] = {
            image: docker.Image(
                f"{name}-{image}",
                image_name=pulumi.Output.concat(self.login_server, f"/{image}:{args.image_tag}"),
                build=docker.DockerBuildArgs(
                    context=str(REPO_ROOT),
                    dockerfile=str(REPO_ROOT / "Dockerfile"),
                    target=image,
                    platform="linux/amd64",
                    args={"BASE_IMAGE": args.base_image},
                ),
                registry=credentials,
                opts=pulumi.ResourceOptions(parent=self.registry),
            )
            for image in IMAGES
        }
        # Digest-pinned references: a rebuilt image changes the pool and container group that use it.
        self.scorer_image = self.images["scorer"].repo_digest
        self.submitter_image = self.images["submitter"].repo_digest
        self.register_outputs(
            {
                "login_server": self.login_server,
                "scorer_image": self.scorer_image,
                "submitter_image": self.submitter_image,
            }
        )
