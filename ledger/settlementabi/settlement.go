// Code generated via abigen V2 - DO NOT EDIT.
// This file is a generated binding and any manual changes will be lost.

package settlementabi

import (
	"bytes"
	"errors"
	"math/big"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/accounts/abi/bind/v2"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
)

// Reference imports to suppress errors if they are not otherwise used.
var (
	_ = bytes.Equal
	_ = errors.New
	_ = big.NewInt
	_ = common.Big1
	_ = types.BloomLookup
	_ = abi.ConvertType
)

// SettlementBatchInfo is an auto generated low-level Go binding around an user-defined struct.
type SettlementBatchInfo struct {
	Root        [32]byte
	EventCount  uint64
	PeriodStart uint64
	PeriodEnd   uint64
	BlockNumber uint64
}

// SettlementMetaData contains all meta data concerning the Settlement contract.
var SettlementMetaData = bind.MetaData{
	ABI: "[{\"inputs\":[],\"stateMutability\":\"nonpayable\",\"type\":\"constructor\"},{\"inputs\":[{\"internalType\":\"uint64\",\"name\":\"id\",\"type\":\"uint64\"}],\"name\":\"BatchExists\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"uint64\",\"name\":\"expected\",\"type\":\"uint64\"},{\"internalType\":\"uint64\",\"name\":\"got\",\"type\":\"uint64\"}],\"name\":\"BatchOutOfOrder\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"uint256\",\"name\":\"index\",\"type\":\"uint256\"}],\"name\":\"InvalidOperatorOrder\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"uint64\",\"name\":\"periodStart\",\"type\":\"uint64\"},{\"internalType\":\"uint64\",\"name\":\"periodEnd\",\"type\":\"uint64\"}],\"name\":\"InvalidPeriod\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"uint256\",\"name\":\"operators\",\"type\":\"uint256\"},{\"internalType\":\"uint256\",\"name\":\"nets\",\"type\":\"uint256\"}],\"name\":\"LengthMismatch\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"address\",\"name\":\"caller\",\"type\":\"address\"}],\"name\":\"NotClearingHouse\",\"type\":\"error\"},{\"inputs\":[{\"internalType\":\"uint64\",\"name\":\"id\",\"type\":\"uint64\"}],\"name\":\"UnknownBatch\",\"type\":\"error\"},{\"anonymous\":false,\"inputs\":[{\"indexed\":true,\"internalType\":\"uint64\",\"name\":\"batchId\",\"type\":\"uint64\"},{\"indexed\":false,\"internalType\":\"bytes32\",\"name\":\"root\",\"type\":\"bytes32\"},{\"indexed\":false,\"internalType\":\"uint64\",\"name\":\"eventCount\",\"type\":\"uint64\"},{\"indexed\":false,\"internalType\":\"uint64\",\"name\":\"periodStart\",\"type\":\"uint64\"},{\"indexed\":false,\"internalType\":\"uint64\",\"name\":\"periodEnd\",\"type\":\"uint64\"},{\"indexed\":false,\"internalType\":\"uint256\",\"name\":\"operatorCount\",\"type\":\"uint256\"}],\"name\":\"BatchCommitted\",\"type\":\"event\"},{\"anonymous\":false,\"inputs\":[{\"indexed\":true,\"internalType\":\"uint64\",\"name\":\"batchId\",\"type\":\"uint64\"},{\"indexed\":true,\"internalType\":\"bytes32\",\"name\":\"operator\",\"type\":\"bytes32\"},{\"indexed\":false,\"internalType\":\"int256\",\"name\":\"net\",\"type\":\"int256\"},{\"indexed\":false,\"internalType\":\"int256\",\"name\":\"balance\",\"type\":\"int256\"}],\"name\":\"OperatorSettled\",\"type\":\"event\"},{\"inputs\":[{\"internalType\":\"bytes32\",\"name\":\"\",\"type\":\"bytes32\"}],\"name\":\"balanceOf\",\"outputs\":[{\"internalType\":\"int256\",\"name\":\"\",\"type\":\"int256\"}],\"stateMutability\":\"view\",\"type\":\"function\"},{\"inputs\":[{\"internalType\":\"uint64\",\"name\":\"id\",\"type\":\"uint64\"}],\"name\":\"batch\",\"outputs\":[{\"components\":[{\"internalType\":\"bytes32\",\"name\":\"root\",\"type\":\"bytes32\"},{\"internalType\":\"uint64\",\"name\":\"eventCount\",\"type\":\"uint64\"},{\"internalType\":\"uint64\",\"name\":\"periodStart\",\"type\":\"uint64\"},{\"internalType\":\"uint64\",\"name\":\"periodEnd\",\"type\":\"uint64\"},{\"internalType\":\"uint64\",\"name\":\"blockNumber\",\"type\":\"uint64\"}],\"internalType\":\"structSettlement.BatchInfo\",\"name\":\"\",\"type\":\"tuple\"}],\"stateMutability\":\"view\",\"type\":\"function\"},{\"inputs\":[],\"name\":\"clearingHouse\",\"outputs\":[{\"internalType\":\"address\",\"name\":\"\",\"type\":\"address\"}],\"stateMutability\":\"view\",\"type\":\"function\"},{\"inputs\":[{\"internalType\":\"uint64\",\"name\":\"id\",\"type\":\"uint64\"},{\"internalType\":\"bytes32\",\"name\":\"root\",\"type\":\"bytes32\"},{\"internalType\":\"uint64\",\"name\":\"eventCount\",\"type\":\"uint64\"},{\"internalType\":\"uint64\",\"name\":\"periodStart\",\"type\":\"uint64\"},{\"internalType\":\"uint64\",\"name\":\"periodEnd\",\"type\":\"uint64\"},{\"internalType\":\"bytes32[]\",\"name\":\"operators\",\"type\":\"bytes32[]\"},{\"internalType\":\"int256[]\",\"name\":\"nets\",\"type\":\"int256[]\"}],\"name\":\"commitBatch\",\"outputs\":[],\"stateMutability\":\"nonpayable\",\"type\":\"function\"},{\"inputs\":[],\"name\":\"nextBatchId\",\"outputs\":[{\"internalType\":\"uint64\",\"name\":\"\",\"type\":\"uint64\"}],\"stateMutability\":\"view\",\"type\":\"function\"},{\"inputs\":[{\"internalType\":\"uint64\",\"name\":\"batchId\",\"type\":\"uint64\"},{\"internalType\":\"bytes32\",\"name\":\"value\",\"type\":\"bytes32\"},{\"internalType\":\"bytes32[]\",\"name\":\"proof\",\"type\":\"bytes32[]\"}],\"name\":\"verify\",\"outputs\":[{\"internalType\":\"bool\",\"name\":\"\",\"type\":\"bool\"}],\"stateMutability\":\"view\",\"type\":\"function\"}]",
	ID:  "Settlement",
	Bin: "0x60a0604052348015600f57600080fd5b50336080526080516109c561003560003960008181606c01526101b501526109c56000f3fe608060405234801561001057600080fd5b50600436106100625760003560e01c80630af96800146100675780630e4e9f21146100ab5780633e746d1d146100c05780636c7f1542146100e35780638462a7f814610111578063857553cc14610131575b600080fd5b61008e7f000000000000000000000000000000000000000000000000000000000000000081565b6040516001600160a01b0390911681526020015b60405180910390f35b6100be6100b93660046107ea565b6101aa565b005b6100d36100ce3660046108ab565b610573565b60405190151581526020016100a2565b6101036100f1366004610904565b60026020526000908152604090205481565b6040519081526020016100a2565b610119610668565b6040516001600160401b0390911681526020016100a2565b61014461013f36600461091d565b610685565b6040516100a29190600060a082019050825182526001600160401b0360208401511660208301526001600160401b0360408401511660408301526001600160401b0360608401511660608301526001600160401b03608084015116608083015292915050565b336001600160a01b037f000000000000000000000000000000000000000000000000000000000000000016146101fa5760405163d7378be960e01b81523360048201526024015b60405180910390fd5b6000546001600160401b03908116908a161580159061022b5750806001600160401b03168a6001600160401b031611155b1561025457604051635f847b7760e01b81526001600160401b038b1660048201526024016101f1565b61025f816001610955565b6001600160401b03168a6001600160401b0316146102af57610282816001610955565b604051630ffbbbff60e21b81526001600160401b039182166004820152908b1660248201526044016101f1565b8382146102d9576040516355c5b3e360e11b815260048101859052602481018390526044016101f1565b856001600160401b0316876001600160401b0316111561031f57604051633e1996bf60e11b81526001600160401b038089166004830152871660248201526044016101f1565b600080546001600160401b03808d1667ffffffffffffffff19909216821783556040805160a0810182528d81528c831660208083019182528d85168385019081528d86166060850190815243871660808601908152888a52600193849052988690209451855592519390910180549151925197518616600160c01b026001600160c01b03988716600160801b02989098166fffffffffffffffffffffffffffffffff938716600160401b026fffffffffffffffffffffffffffffffff19909316949096169390931717169290921793909317905590517f3319a8470b7a8c27d2f70604ef9fd81bfb8d7093d69a42f29a7d5dafb04d137a90610453908c908c908c908c908b909485526001600160401b03938416602086015291831660408501529091166060830152608082015260a00190565b60405180910390a26000805b8581101561056557600087878381811061047b5761047b61097a565b9050602002013590508281116104a75760405163d7a0183760e01b8152600481018390526024016101f1565b80925060008686848181106104be576104be61097a565b9050602002013560026000848152602001908152602001600020546104e39190610990565b60008381526002602052604090208190559050816001600160401b038f167fb78cdbe285fb8390a7cd4c8166382bc17d60e894455b146215b8c12ea4c8e0858989878181106105345761053461097a565b9050602002013584604051610553929190918252602082015260400190565b60405180910390a3505060010161045f565b505050505050505050505050565b60006001600160401b038516158061059957506000546001600160401b03908116908616115b156105c2576040516329323fff60e01b81526001600160401b03861660048201526024016101f1565b6000846040516020016105d791815260200190565b60408051601f198184030181528282528051602091820120908301520160405160208183030381529060405280519060200120905060005b83811015610643576106398286868481811061062d5761062d61097a565b90506020020135610765565b915060010161060f565b506001600160401b038616600090815260016020526040902054149050949350505050565b60008054610680906001600160401b03166001610955565b905090565b6040805160a0810182526000808252602082018190529181018290526060810182905260808101919091526001600160401b03821615806106d457506000546001600160401b03908116908316115b156106fd576040516329323fff60e01b81526001600160401b03831660048201526024016101f1565b506001600160401b03908116600090815260016020818152604092839020835160a0810185528154815292015480851691830191909152600160401b8104841692820192909252600160801b820483166060820152600160c01b909104909116608082015290565b600081831115610773579091905b5060009182526020526040902090565b80356001600160401b038116811461079a57600080fd5b919050565b60008083601f8401126107b157600080fd5b5081356001600160401b038111156107c857600080fd5b6020830191508360208260051b85010111156107e357600080fd5b9250929050565b600080600080600080600080600060e08a8c03121561080857600080fd5b6108118a610783565b985060208a0135975061082660408b01610783565b965061083460608b01610783565b955061084260808b01610783565b945060a08a01356001600160401b0381111561085d57600080fd5b6108698c828d0161079f565b90955093505060c08a01356001600160401b0381111561088857600080fd5b6108948c828d0161079f565b915080935050809150509295985092959850929598565b600080600080606085870312156108c157600080fd5b6108ca85610783565b93506020850135925060408501356001600160401b038111156108ec57600080fd5b6108f88782880161079f565b95989497509550505050565b60006020828403121561091657600080fd5b5035919050565b60006020828403121561092f57600080fd5b61093882610783565b9392505050565b634e487b7160e01b600052601160045260246000fd5b6001600160401b0381811683821601908111156109745761097461093f565b92915050565b634e487b7160e01b600052603260045260246000fd5b80820182811260008312801582168215821617156109b0576109b061093f565b50509291505056fea164736f6c6343000825000a",
}

// Settlement is an auto generated Go binding around an Ethereum contract.
type Settlement struct {
	abi abi.ABI
}

// GetABI returns the ABI associated with this contract binding.
func (c *Settlement) GetABI() abi.ABI {
	return c.abi
}

// NewSettlement creates a new instance of Settlement.
func NewSettlement() *Settlement {
	parsed, err := SettlementMetaData.ParseABI()
	if err != nil {
		panic(errors.New("invalid ABI: " + err.Error()))
	}
	return &Settlement{abi: *parsed}
}

// Instance creates a wrapper for a deployed contract instance at the given address.
// Use this to create the instance object passed to abigen v2 library functions Call, Transact, etc.
func (c *Settlement) Instance(backend bind.ContractBackend, addr common.Address) *bind.BoundContract {
	return bind.NewBoundContract(addr, c.abi, backend, backend, backend)
}

// PackBalanceOf is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x6c7f1542.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function balanceOf(bytes32 ) view returns(int256)
func (settlement *Settlement) PackBalanceOf(arg0 [32]byte) []byte {
	enc, err := settlement.abi.Pack("balanceOf", arg0)
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackBalanceOf is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x6c7f1542.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function balanceOf(bytes32 ) view returns(int256)
func (settlement *Settlement) TryPackBalanceOf(arg0 [32]byte) ([]byte, error) {
	return settlement.abi.Pack("balanceOf", arg0)
}

// UnpackBalanceOf is the Go binding that unpacks the parameters returned
// from invoking the contract method with ID 0x6c7f1542.
//
// Solidity: function balanceOf(bytes32 ) view returns(int256)
func (settlement *Settlement) UnpackBalanceOf(data []byte) (*big.Int, error) {
	out, err := settlement.abi.Unpack("balanceOf", data)
	if err != nil {
		return new(big.Int), err
	}
	out0 := abi.ConvertType(out[0], new(big.Int)).(*big.Int)
	return out0, nil
}

// PackBatch is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x857553cc.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function batch(uint64 id) view returns((bytes32,uint64,uint64,uint64,uint64))
func (settlement *Settlement) PackBatch(id uint64) []byte {
	enc, err := settlement.abi.Pack("batch", id)
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackBatch is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x857553cc.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function batch(uint64 id) view returns((bytes32,uint64,uint64,uint64,uint64))
func (settlement *Settlement) TryPackBatch(id uint64) ([]byte, error) {
	return settlement.abi.Pack("batch", id)
}

// UnpackBatch is the Go binding that unpacks the parameters returned
// from invoking the contract method with ID 0x857553cc.
//
// Solidity: function batch(uint64 id) view returns((bytes32,uint64,uint64,uint64,uint64))
func (settlement *Settlement) UnpackBatch(data []byte) (SettlementBatchInfo, error) {
	out, err := settlement.abi.Unpack("batch", data)
	if err != nil {
		return *new(SettlementBatchInfo), err
	}
	out0 := *abi.ConvertType(out[0], new(SettlementBatchInfo)).(*SettlementBatchInfo)
	return out0, nil
}

// PackClearingHouse is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x0af96800.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function clearingHouse() view returns(address)
func (settlement *Settlement) PackClearingHouse() []byte {
	enc, err := settlement.abi.Pack("clearingHouse")
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackClearingHouse is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x0af96800.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function clearingHouse() view returns(address)
func (settlement *Settlement) TryPackClearingHouse() ([]byte, error) {
	return settlement.abi.Pack("clearingHouse")
}

// UnpackClearingHouse is the Go binding that unpacks the parameters returned
// from invoking the contract method with ID 0x0af96800.
//
// Solidity: function clearingHouse() view returns(address)
func (settlement *Settlement) UnpackClearingHouse(data []byte) (common.Address, error) {
	out, err := settlement.abi.Unpack("clearingHouse", data)
	if err != nil {
		return *new(common.Address), err
	}
	out0 := *abi.ConvertType(out[0], new(common.Address)).(*common.Address)
	return out0, nil
}

// PackCommitBatch is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x0e4e9f21.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function commitBatch(uint64 id, bytes32 root, uint64 eventCount, uint64 periodStart, uint64 periodEnd, bytes32[] operators, int256[] nets) returns()
func (settlement *Settlement) PackCommitBatch(id uint64, root [32]byte, eventCount uint64, periodStart uint64, periodEnd uint64, operators [][32]byte, nets []*big.Int) []byte {
	enc, err := settlement.abi.Pack("commitBatch", id, root, eventCount, periodStart, periodEnd, operators, nets)
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackCommitBatch is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x0e4e9f21.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function commitBatch(uint64 id, bytes32 root, uint64 eventCount, uint64 periodStart, uint64 periodEnd, bytes32[] operators, int256[] nets) returns()
func (settlement *Settlement) TryPackCommitBatch(id uint64, root [32]byte, eventCount uint64, periodStart uint64, periodEnd uint64, operators [][32]byte, nets []*big.Int) ([]byte, error) {
	return settlement.abi.Pack("commitBatch", id, root, eventCount, periodStart, periodEnd, operators, nets)
}

// PackNextBatchId is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x8462a7f8.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function nextBatchId() view returns(uint64)
func (settlement *Settlement) PackNextBatchId() []byte {
	enc, err := settlement.abi.Pack("nextBatchId")
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackNextBatchId is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x8462a7f8.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function nextBatchId() view returns(uint64)
func (settlement *Settlement) TryPackNextBatchId() ([]byte, error) {
	return settlement.abi.Pack("nextBatchId")
}

// UnpackNextBatchId is the Go binding that unpacks the parameters returned
// from invoking the contract method with ID 0x8462a7f8.
//
// Solidity: function nextBatchId() view returns(uint64)
func (settlement *Settlement) UnpackNextBatchId(data []byte) (uint64, error) {
	out, err := settlement.abi.Unpack("nextBatchId", data)
	if err != nil {
		return *new(uint64), err
	}
	out0 := *abi.ConvertType(out[0], new(uint64)).(*uint64)
	return out0, nil
}

// PackVerify is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x3e746d1d.  This method will panic if any
// invalid/nil inputs are passed.
//
// Solidity: function verify(uint64 batchId, bytes32 value, bytes32[] proof) view returns(bool)
func (settlement *Settlement) PackVerify(batchId uint64, value [32]byte, proof [][32]byte) []byte {
	enc, err := settlement.abi.Pack("verify", batchId, value, proof)
	if err != nil {
		panic(err)
	}
	return enc
}

// TryPackVerify is the Go binding used to pack the parameters required for calling
// the contract method with ID 0x3e746d1d.  This method will return an error
// if any inputs are invalid/nil.
//
// Solidity: function verify(uint64 batchId, bytes32 value, bytes32[] proof) view returns(bool)
func (settlement *Settlement) TryPackVerify(batchId uint64, value [32]byte, proof [][32]byte) ([]byte, error) {
	return settlement.abi.Pack("verify", batchId, value, proof)
}

// UnpackVerify is the Go binding that unpacks the parameters returned
// from invoking the contract method with ID 0x3e746d1d.
//
// Solidity: function verify(uint64 batchId, bytes32 value, bytes32[] proof) view returns(bool)
func (settlement *Settlement) UnpackVerify(data []byte) (bool, error) {
	out, err := settlement.abi.Unpack("verify", data)
	if err != nil {
		return *new(bool), err
	}
	out0 := *abi.ConvertType(out[0], new(bool)).(*bool)
	return out0, nil
}

// SettlementBatchCommitted represents a BatchCommitted event raised by the Settlement contract.
type SettlementBatchCommitted struct {
	BatchId       uint64
	Root          [32]byte
	EventCount    uint64
	PeriodStart   uint64
	PeriodEnd     uint64
	OperatorCount *big.Int
	Raw           *types.Log // Blockchain specific contextual infos
}

const SettlementBatchCommittedEventName = "BatchCommitted"

// ContractEventName returns the user-defined event name.
func (SettlementBatchCommitted) ContractEventName() string {
	return SettlementBatchCommittedEventName
}

// UnpackBatchCommittedEvent is the Go binding that unpacks the event data emitted
// by contract.
//
// Solidity: event BatchCommitted(uint64 indexed batchId, bytes32 root, uint64 eventCount, uint64 periodStart, uint64 periodEnd, uint256 operatorCount)
func (settlement *Settlement) UnpackBatchCommittedEvent(log *types.Log) (*SettlementBatchCommitted, error) {
	event := "BatchCommitted"
	if len(log.Topics) == 0 {
		return nil, bind.ErrNoEventSignature
	}
	if log.Topics[0] != settlement.abi.Events[event].ID {
		return nil, bind.ErrEventSignatureMismatch
	}
	out := new(SettlementBatchCommitted)
	if len(log.Data) > 0 {
		if err := settlement.abi.UnpackIntoInterface(out, event, log.Data); err != nil {
			return nil, err
		}
	}
	var indexed abi.Arguments
	for _, arg := range settlement.abi.Events[event].Inputs {
		if arg.Indexed {
			indexed = append(indexed, arg)
		}
	}
	if err := abi.ParseTopics(out, indexed, log.Topics[1:]); err != nil {
		return nil, err
	}
	out.Raw = log
	return out, nil
}

// SettlementOperatorSettled represents a OperatorSettled event raised by the Settlement contract.
type SettlementOperatorSettled struct {
	BatchId  uint64
	Operator [32]byte
	Net      *big.Int
	Balance  *big.Int
	Raw      *types.Log // Blockchain specific contextual infos
}

const SettlementOperatorSettledEventName = "OperatorSettled"

// ContractEventName returns the user-defined event name.
func (SettlementOperatorSettled) ContractEventName() string {
	return SettlementOperatorSettledEventName
}

// UnpackOperatorSettledEvent is the Go binding that unpacks the event data emitted
// by contract.
//
// Solidity: event OperatorSettled(uint64 indexed batchId, bytes32 indexed operator, int256 net, int256 balance)
func (settlement *Settlement) UnpackOperatorSettledEvent(log *types.Log) (*SettlementOperatorSettled, error) {
	event := "OperatorSettled"
	if len(log.Topics) == 0 {
		return nil, bind.ErrNoEventSignature
	}
	if log.Topics[0] != settlement.abi.Events[event].ID {
		return nil, bind.ErrEventSignatureMismatch
	}
	out := new(SettlementOperatorSettled)
	if len(log.Data) > 0 {
		if err := settlement.abi.UnpackIntoInterface(out, event, log.Data); err != nil {
			return nil, err
		}
	}
	var indexed abi.Arguments
	for _, arg := range settlement.abi.Events[event].Inputs {
		if arg.Indexed {
			indexed = append(indexed, arg)
		}
	}
	if err := abi.ParseTopics(out, indexed, log.Topics[1:]); err != nil {
		return nil, err
	}
	out.Raw = log
	return out, nil
}

// UnpackError attempts to decode the provided error data using user-defined
// error definitions.
func (settlement *Settlement) UnpackError(raw []byte) (any, error) {
	if bytes.Equal(raw[:4], settlement.abi.Errors["BatchExists"].ID.Bytes()[:4]) {
		return settlement.UnpackBatchExistsError(raw[4:])
	}
	if bytes.Equal(raw[:4], settlement.abi.Errors["BatchOutOfOrder"].ID.Bytes()[:4]) {
		return settlement.UnpackBatchOutOfOrderError(raw[4:])
	}
	if bytes.Equal(raw[:4], settlement.abi.Errors["InvalidOperatorOrder"].ID.Bytes()[:4]) {
		return settlement.UnpackInvalidOperatorOrderError(raw[4:])
	}
	if bytes.Equal(raw[:4], settlement.abi.Errors["InvalidPeriod"].ID.Bytes()[:4]) {
		return settlement.UnpackInvalidPeriodError(raw[4:])
	}
	if bytes.Equal(raw[:4], settlement.abi.Errors["LengthMismatch"].ID.Bytes()[:4]) {
		return settlement.UnpackLengthMismatchError(raw[4:])
	}
	if bytes.Equal(raw[:4], settlement.abi.Errors["NotClearingHouse"].ID.Bytes()[:4]) {
		return settlement.UnpackNotClearingHouseError(raw[4:])
	}
	if bytes.Equal(raw[:4], settlement.abi.Errors["UnknownBatch"].ID.Bytes()[:4]) {
		return settlement.UnpackUnknownBatchError(raw[4:])
	}
	return nil, errors.New("Unknown error")
}

// SettlementBatchExists represents a BatchExists error raised by the Settlement contract.
type SettlementBatchExists struct {
	Id uint64
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error BatchExists(uint64 id)
func SettlementBatchExistsErrorID() common.Hash {
	return common.HexToHash("0x5f847b77a74cccf2fd0485b3ef7ff8cff1923a0b42dda66e7f8b7b85a8ccbc0c")
}

// UnpackBatchExistsError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error BatchExists(uint64 id)
func (settlement *Settlement) UnpackBatchExistsError(raw []byte) (*SettlementBatchExists, error) {
	out := new(SettlementBatchExists)
	if err := settlement.abi.UnpackIntoInterface(out, "BatchExists", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// SettlementBatchOutOfOrder represents a BatchOutOfOrder error raised by the Settlement contract.
type SettlementBatchOutOfOrder struct {
	Expected uint64
	Got      uint64
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error BatchOutOfOrder(uint64 expected, uint64 got)
func SettlementBatchOutOfOrderErrorID() common.Hash {
	return common.HexToHash("0x3feeeffcab9259368baa92694662c34cef29f165387e3442fa6730f78128b3dc")
}

// UnpackBatchOutOfOrderError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error BatchOutOfOrder(uint64 expected, uint64 got)
func (settlement *Settlement) UnpackBatchOutOfOrderError(raw []byte) (*SettlementBatchOutOfOrder, error) {
	out := new(SettlementBatchOutOfOrder)
	if err := settlement.abi.UnpackIntoInterface(out, "BatchOutOfOrder", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// SettlementInvalidOperatorOrder represents a InvalidOperatorOrder error raised by the Settlement contract.
type SettlementInvalidOperatorOrder struct {
	Index *big.Int
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error InvalidOperatorOrder(uint256 index)
func SettlementInvalidOperatorOrderErrorID() common.Hash {
	return common.HexToHash("0xd7a018373493a574df18ecc45f36217ebdf42cfd392a6502ab5faff913e803ab")
}

// UnpackInvalidOperatorOrderError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error InvalidOperatorOrder(uint256 index)
func (settlement *Settlement) UnpackInvalidOperatorOrderError(raw []byte) (*SettlementInvalidOperatorOrder, error) {
	out := new(SettlementInvalidOperatorOrder)
	if err := settlement.abi.UnpackIntoInterface(out, "InvalidOperatorOrder", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// SettlementInvalidPeriod represents a InvalidPeriod error raised by the Settlement contract.
type SettlementInvalidPeriod struct {
	PeriodStart uint64
	PeriodEnd   uint64
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error InvalidPeriod(uint64 periodStart, uint64 periodEnd)
func SettlementInvalidPeriodErrorID() common.Hash {
	return common.HexToHash("0x7c332d7e82193481a3b1e2ae548350c71c98bc1a8eb7c92aa9f4818f4e6aab20")
}

// UnpackInvalidPeriodError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error InvalidPeriod(uint64 periodStart, uint64 periodEnd)
func (settlement *Settlement) UnpackInvalidPeriodError(raw []byte) (*SettlementInvalidPeriod, error) {
	out := new(SettlementInvalidPeriod)
	if err := settlement.abi.UnpackIntoInterface(out, "InvalidPeriod", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// SettlementLengthMismatch represents a LengthMismatch error raised by the Settlement contract.
type SettlementLengthMismatch struct {
	Operators *big.Int
	Nets      *big.Int
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error LengthMismatch(uint256 operators, uint256 nets)
func SettlementLengthMismatchErrorID() common.Hash {
	return common.HexToHash("0xab8b67c6893c59617ef3ba4b4b942e9791f2572db2fdb32028356532f3b7396a")
}

// UnpackLengthMismatchError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error LengthMismatch(uint256 operators, uint256 nets)
func (settlement *Settlement) UnpackLengthMismatchError(raw []byte) (*SettlementLengthMismatch, error) {
	out := new(SettlementLengthMismatch)
	if err := settlement.abi.UnpackIntoInterface(out, "LengthMismatch", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// SettlementNotClearingHouse represents a NotClearingHouse error raised by the Settlement contract.
type SettlementNotClearingHouse struct {
	Caller common.Address
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error NotClearingHouse(address caller)
func SettlementNotClearingHouseErrorID() common.Hash {
	return common.HexToHash("0xd7378be9e6efaa5ee1a1e859633e29edc0103dc71fc189c97f3fe519691d1fc8")
}

// UnpackNotClearingHouseError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error NotClearingHouse(address caller)
func (settlement *Settlement) UnpackNotClearingHouseError(raw []byte) (*SettlementNotClearingHouse, error) {
	out := new(SettlementNotClearingHouse)
	if err := settlement.abi.UnpackIntoInterface(out, "NotClearingHouse", raw); err != nil {
		return nil, err
	}
	return out, nil
}

// SettlementUnknownBatch represents a UnknownBatch error raised by the Settlement contract.
type SettlementUnknownBatch struct {
	Id uint64
}

// ErrorID returns the hash of canonical representation of the error's signature.
//
// Solidity: error UnknownBatch(uint64 id)
func SettlementUnknownBatchErrorID() common.Hash {
	return common.HexToHash("0x29323ffff0d2ae0465a5a02be95b40fbdb0fc0656d05f820f3904c4580a7b0c1")
}

// UnpackUnknownBatchError is the Go binding used to decode the provided
// error data into the corresponding Go error struct.
//
// Solidity: error UnknownBatch(uint64 id)
func (settlement *Settlement) UnpackUnknownBatchError(raw []byte) (*SettlementUnknownBatch, error) {
	out := new(SettlementUnknownBatch)
	if err := settlement.abi.UnpackIntoInterface(out, "UnknownBatch", raw); err != nil {
		return nil, err
	}
	return out, nil
}
