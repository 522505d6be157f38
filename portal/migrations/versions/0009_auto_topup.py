"""auto top-up and balance alerts: a person's auto top-up setting and attempts (at most one
in flight per account, by a unique partial index), and the outbox a settlement writes
when it takes a balance below a threshold

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 23:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import portal.db.base

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "auto_top_ups",
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("threshold_units", sa.BigInteger(), nullable=False),
        sa.Column("amount_units", sa.BigInteger(), nullable=False),
        sa.Column("off_reason", sa.String(length=64), nullable=True),
        sa.Column("updated_at", portal.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_auto_top_ups_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_auto_top_ups")),
    )
    op.create_table(
        "auto_top_up_attempts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("amount_units", sa.BigInteger(), nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("created_at", portal.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", portal.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_auto_top_up_attempts_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auto_top_up_attempts")),
        sa.UniqueConstraint("user_id", "sequence", name="uq_auto_top_up_attempts_sequence"),
        sa.UniqueConstraint(
            "payment_intent_id", name=op.f("uq_auto_top_up_attempts_payment_intent_id")
        ),
    )
    with op.batch_alter_table("auto_top_up_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_auto_top_up_attempts_user_id"), ["user_id"], unique=False
        )
        batch_op.create_index(
            "uq_auto_top_up_attempts_in_flight",
            ["user_id"],
            unique=True,
            sqlite_where=sa.text("finished_at IS NULL"),
            postgresql_where=sa.text("finished_at IS NULL"),
        )
    op.create_table(
        "balance_alerts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("low_balance", sa.Boolean(), nullable=False),
        sa.Column("top_up", sa.Boolean(), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("created_at", portal.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_balance_alerts_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_balance_alerts")),
    )
    with op.batch_alter_table("balance_alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_balance_alerts_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("balance_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_balance_alerts_user_id"))
    op.drop_table("balance_alerts")
    with op.batch_alter_table("auto_top_up_attempts", schema=None) as batch_op:
        batch_op.drop_index("uq_auto_top_up_attempts_in_flight")
        batch_op.drop_index(batch_op.f("ix_auto_top_up_attempts_user_id"))
    op.drop_table("auto_top_up_attempts")
    op.drop_table("auto_top_ups")
