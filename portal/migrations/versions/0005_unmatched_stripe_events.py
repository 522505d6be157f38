"""unmatched stripe events: an event that names something of ours but no user (or whose
object is gone at Stripe) is kept as `unmatched`, open to redelivery, replay and sync

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 12:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import portal.db.base

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("stripe_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("outcome", sa.String(length=16), server_default="handled", nullable=False)
        )
        batch_op.add_column(sa.Column("reason", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("stripe_customer_id", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("object_id", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column("last_seen_at", portal.db.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_stripe_events_stripe_customer_id"), ["stripe_customer_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("stripe_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stripe_events_stripe_customer_id"))
        batch_op.drop_column("last_seen_at")
        batch_op.drop_column("object_id")
        batch_op.drop_column("stripe_customer_id")
        batch_op.drop_column("reason")
        batch_op.drop_column("outcome")
