"""connect codes: one-time codes an approved app trades for a gateway token (OAuth 2.0
authorization code + PKCE); only the code's SHA-256 is stored

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 20:00:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import portal.db.base

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('connect_codes',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('code_challenge', sa.String(length=128), nullable=False),
    sa.Column('callback_url', sa.String(length=2000), nullable=False),
    sa.Column('app_name', sa.String(length=100), nullable=False),
    sa.Column('created_at', portal.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', portal.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', portal.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('token_id', sa.String(length=36), nullable=True),
    sa.ForeignKeyConstraint(['token_id'], ['gateway_tokens.id'], name=op.f('fk_connect_codes_token_id_gateway_tokens'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_connect_codes_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_connect_codes')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_connect_codes_code_hash'))
    )
    with op.batch_alter_table('connect_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_connect_codes_token_id'), ['token_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_connect_codes_user_id'), ['user_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('connect_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_connect_codes_user_id'))
        batch_op.drop_index(batch_op.f('ix_connect_codes_token_id'))
    op.drop_table('connect_codes')
